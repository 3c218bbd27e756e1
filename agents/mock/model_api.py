#!/usr/bin/env python3
"""Mock model APIs for running real agent CLIs offline (standard library only).

One server on 127.0.0.1 speaks three wire formats:

  * Anthropic Messages      POST /v1/messages                (SSE when "stream": true)
                            POST /v1/messages/count_tokens
  * OpenAI Responses        POST /v1/responses               (SSE)
                            GET  /v1/models
  * Gemini                  POST /v1beta/models/M:streamGenerateContent?alt=sse
                            POST /v1beta/models/M:generateContent
                            POST /v1beta/models/M:countTokens

The scenario is written into the user's prompt as directives, so one mock serves
every test:

    [[mock:shell touch approved.txt]]   ask for one shell tool call with that command
    [[mock:write notes.txt hello]]      ask for one file write/patch (path, then content)
    [[mock:plan 1. step one]]           ask for ExitPlanMode with that plan (Claude only)
    [[mock:text]]                       answer with text only (also the default)

Rule, per request: find the newest user prompt with a directive (the turn). If the
tool call(s) the directive asks for have not all been made since then and the request
offers the tool, answer with the next one; once they are made, answer with a final text
"MOCK-FINAL: the tool returned: ..." that quotes the last tool result (so a test sees
that the agent saw the deny message). A request that offers no tools (title generation,
classifiers, ...) gets plain text, or JSON shaped after its schema when it asks for JSON
(Gemini's model router).

Per format: Anthropic shell=Bash, write=Write (absolute path under the cwd named in the
system prompt), plan=[ToolSearch "select:ExitPlanMode" when that tool is deferred, Write
of the plan file the system prompt names, ExitPlanMode]. OpenAI Responses shell=
exec_command / shell_command / shell, whichever is offered; write=apply_patch when
offered, else `apply_patch <<'EOF' ... EOF` through the shell tool, which Codex
intercepts and turns into a file change. Gemini shell=run_shell_command, write=write_file.

Every request is appended to --log as one JSON line (method, path, headers, body).
The port is printed on stdout as "PORT=<n>" (and written to --port-file) once the
server listens; the server exits by itself after --max-seconds.
"""

import argparse
import itertools
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DIRECTIVE = re.compile(r"\[\[mock:(shell|write|plan|text)(?:[ \t]+([^\]]*))?\]\]")
FINAL_PREFIX = "MOCK-FINAL:"
COUNTER = itertools.count(1)
LOG_LOCK = threading.Lock()
ARGS = None


def nid(prefix):
    return "%s%06d" % (prefix, next(COUNTER))


def approx_tokens(obj):
    return max(1, len(json.dumps(obj)) // 4)


def parse_directive(texts):
    """Last directive found in the given user texts (newest last)."""
    found = None
    for t in texts:
        for m in DIRECTIVE.finditer(t or ""):
            found = (m.group(1), (m.group(2) or "").strip())
    return found or ("text", "")


def final_text(tool_result):
    tr = " ".join((tool_result or "").split())
    if len(tr) > 300:
        tr = tr[:300] + "..."
    return "%s the tool returned: %s" % (FINAL_PREFIX, tr or "(nothing)")


def write_args(arg):
    path, _, content = arg.partition(" ")
    return path or "mock.txt", (content or "hello from the mock") + "\n"


def texts_of(content):
    """All text strings in an Anthropic/OpenAI style content value."""
    out = []
    if isinstance(content, str):
        out.append(content)
    elif isinstance(content, list):
        for c in content:
            if isinstance(c, dict):
                for k in ("text", "input_text"):
                    if isinstance(c.get(k), str):
                        out.append(c[k])
            elif isinstance(c, str):
                out.append(c)
    return out


# --------------------------------------------------------------------------- Anthropic


def turn_start(items, user_texts_of):
    """Index of the newest item whose user text carries a directive (the turn's prompt)."""
    for i in range(len(items) - 1, -1, -1):
        for t in user_texts_of(items[i]):
            if DIRECTIVE.search(t or ""):
                return i
    return None


def anthropic_plan(body):
    """Per turn, the directive is a short list of tool calls; each request does the next
    one that has not been done since the prompt, then a final text quoting the last result."""
    msgs = [m for m in body.get("messages") or [] if m.get("role") in ("user", "assistant")]
    tools = {t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)}

    def user_texts(m):
        return texts_of(m.get("content")) if m.get("role") == "user" else []

    start = turn_start(msgs, user_texts)
    if start is None:
        return ("text", "MOCK: hello from the mock model.")
    kind, arg = parse_directive(user_texts(msgs[start]))
    done, last_result = [], None
    for m in msgs[start + 1:]:
        for c in m.get("content") or []:
            if not isinstance(c, dict):
                continue
            if c.get("type") == "tool_use":
                done.append(c.get("name"))
            elif c.get("type") == "tool_result":
                parts = c.get("content")
                text = parts if isinstance(parts, str) else " ".join(texts_of(parts))
                last_result = ("[is_error] " if c.get("is_error") else "") + text
    steps = []
    if kind == "shell":
        steps = [("Bash", {"command": arg, "description": "Run the command the mock asked for"})]
    elif kind == "write":
        path, content = write_args(arg)
        steps = [("Write", {"file_path": os.path.join(body_cwd_hint(body), path), "content": content})]
    elif kind == "plan":
        plan = (arg or "1. Do the thing.").replace(" 2.", "\n2.").replace(" 3.", "\n3.")
        if "ExitPlanMode" not in tools:
            # A deferred tool: a real model loads its schema through ToolSearch first.
            steps.append(("ToolSearch", {"query": "select:ExitPlanMode", "max_results": 1}))
        m = re.search(r"create your plan at (/\S+?\.md)", json.dumps(body.get("system")) +
                      json.dumps(body.get("messages")))
        if m:
            steps.append(("Write", {"file_path": m.group(1), "content": "# Plan\n\n" + plan + "\n"}))
        steps.append(("ExitPlanMode", {"plan": plan}))
    for name, inp in steps:
        if name in done:
            continue
        if name != "ToolSearch" and name not in tools and name not in searched(msgs):
            return ("text", "MOCK: tool %s not offered (tools: %s)." % (name, ",".join(sorted(tools))))
        return ("tool", name, inp)
    if last_result is not None:
        return ("text", final_text(last_result))
    return ("text", "MOCK: hello from the mock model.")


def searched(msgs):
    """Names of tools already loaded through ToolSearch in this conversation."""
    out = ""
    for m in msgs:
        for c in m.get("content") or []:
            if isinstance(c, dict) and c.get("type") == "tool_use" and c.get("name") == "ToolSearch":
                out += json.dumps(c.get("input"))
    return out


def body_cwd_hint(body):
    """Claude's Write tool wants an absolute path: take the cwd from the system prompt."""
    text = json.dumps(body.get("system")) + json.dumps(body.get("messages"))
    m = re.search(r"Primary working directory: ([^\\\n\"]+)", text) or re.search(
        r"[Ww]orking directory: ([^\\\n\"]+)", text)
    return m.group(1).strip() if m else os.getcwd()


def anthropic_events(body, plan):
    model = body.get("model") or "claude-sonnet-4-5"
    in_tok = approx_tokens(body.get("messages"))
    mid = nid("msg_mock")
    yield "message_start", {"type": "message_start", "message": {
        "id": mid, "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": in_tok, "output_tokens": 1,
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}}
    if plan[0] == "text":
        text = plan[1]
        yield "content_block_start", {"type": "content_block_start", "index": 0,
                                      "content_block": {"type": "text", "text": ""}}
        half = text.find(" ") + 1 or len(text) // 2  # first word, then the rest
        for piece in (text[:half], text[half:]):
            yield "content_block_delta", {"type": "content_block_delta", "index": 0,
                                          "delta": {"type": "text_delta", "text": piece}}
        yield "content_block_stop", {"type": "content_block_stop", "index": 0}
        stop, out_tok = "end_turn", approx_tokens(text)
    else:
        _, name, inp = plan
        yield "content_block_start", {"type": "content_block_start", "index": 0,
                                      "content_block": {"type": "text", "text": ""}}
        yield "content_block_delta", {"type": "content_block_delta", "index": 0,
                                      "delta": {"type": "text_delta", "text": "MOCK: calling %s." % name}}
        yield "content_block_stop", {"type": "content_block_stop", "index": 0}
        yield "content_block_start", {"type": "content_block_start", "index": 1,
                                      "content_block": {"type": "tool_use", "id": nid("toolu_mock"),
                                                        "name": name, "input": {}}}
        yield "content_block_delta", {"type": "content_block_delta", "index": 1,
                                      "delta": {"type": "input_json_delta", "partial_json": json.dumps(inp)}}
        yield "content_block_stop", {"type": "content_block_stop", "index": 1}
        stop, out_tok = "tool_use", approx_tokens(inp)
    yield "message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                            "usage": {"output_tokens": out_tok}}
    yield "message_stop", {"type": "message_stop"}


def anthropic_message(body, plan):
    """Non-streaming Messages answer."""
    content = []
    if plan[0] == "text":
        content.append({"type": "text", "text": plan[1]})
        stop = "end_turn"
    else:
        content.append({"type": "tool_use", "id": nid("toolu_mock"), "name": plan[1], "input": plan[2]})
        stop = "tool_use"
    return {"id": nid("msg_mock"), "type": "message", "role": "assistant",
            "model": body.get("model") or "claude-sonnet-4-5", "content": content,
            "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": approx_tokens(body.get("messages")), "output_tokens": 10,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}


# --------------------------------------------------------------------------- OpenAI Responses


def openai_tools(body):
    out = {}
    for t in body.get("tools") or []:
        if isinstance(t, dict):
            name = t.get("name") or (t.get("function") or {}).get("name")
            if name:
                out[name] = t
    return out


def openai_plan(body):
    items = body.get("input")
    if isinstance(items, str):
        items = [{"type": "message", "role": "user", "content": items}]
    items = items or []
    tools = openai_tools(body)
    last = items[-1] if items else {}
    if last.get("type") in ("function_call_output", "custom_tool_call_output", "local_shell_call_output"):
        out = last.get("output")
        if isinstance(out, dict):
            out = out.get("content") or json.dumps(out)
        elif isinstance(out, list):
            out = " ".join(texts_of(out))
        return ("text", final_text(str(out)))
    user_texts = []
    for it in items:
        if it.get("role") == "user" and it.get("type", "message") == "message":
            user_texts.extend(texts_of(it.get("content")))
    kind, arg = parse_directive(user_texts[-3:] if user_texts else [])
    if kind == "shell":
        if "exec_command" in tools:
            return ("fn", "exec_command", {"cmd": arg})
        if "shell_command" in tools:
            return ("fn", "shell_command", {"command": arg})
        if "shell" in tools:
            return ("fn", "shell", {"command": ["bash", "-lc", arg]})
    if kind == "write":
        path, content = write_args(arg)
        patch = "*** Begin Patch\n*** Add File: %s\n%s*** End Patch\n" % (
            path, "".join("+" + l + "\n" for l in content.rstrip("\n").split("\n")))
        if "apply_patch" in tools:
            if tools["apply_patch"].get("type") == "custom":
                return ("custom", "apply_patch", patch)
            return ("fn", "apply_patch", {"input": patch})
        # No apply_patch tool: Codex intercepts `apply_patch` run through its shell tool
        # and turns it into a file change (with a fileChange approval).
        heredoc = "apply_patch <<'EOF'\n%sEOF\n" % patch
        if "exec_command" in tools:
            return ("fn", "exec_command", {"cmd": heredoc})
        if "shell_command" in tools:
            return ("fn", "shell_command", {"command": heredoc})
        if "shell" in tools:
            return ("fn", "shell", {"command": ["apply_patch", patch]})
    if kind == "text" or not tools:
        return ("text", "MOCK: hello from the mock model.")
    return ("text", "MOCK: no matching tool offered for %s (tools: %s)." % (kind, ",".join(sorted(tools))))


def openai_events(body, plan):
    rid = nid("resp_mock")
    model = body.get("model") or "gpt-5"
    base = {"id": rid, "object": "response", "created_at": int(time.time()), "model": model,
            "status": "in_progress", "output": []}
    yield "response.created", {"type": "response.created", "response": base}
    yield "response.in_progress", {"type": "response.in_progress", "response": base}
    if plan[0] == "text":
        text = plan[1]
        mid = nid("msg_mock")
        item = {"type": "message", "id": mid, "role": "assistant", "status": "in_progress", "content": []}
        yield "response.output_item.added", {"type": "response.output_item.added", "output_index": 0, "item": item}
        yield "response.content_part.added", {"type": "response.content_part.added", "item_id": mid,
                                              "output_index": 0, "content_index": 0,
                                              "part": {"type": "output_text", "text": "", "annotations": []}}
        half = text.find(" ") + 1 or len(text) // 2  # first word, then the rest
        for piece in (text[:half], text[half:]):
            yield "response.output_text.delta", {"type": "response.output_text.delta", "item_id": mid,
                                                 "output_index": 0, "content_index": 0, "delta": piece}
        yield "response.output_text.done", {"type": "response.output_text.done", "item_id": mid,
                                            "output_index": 0, "content_index": 0, "text": text}
        done = dict(item, status="completed",
                    content=[{"type": "output_text", "text": text, "annotations": []}])
        out_tok = approx_tokens(text)
    elif plan[0] == "fn":
        _, name, args = plan
        done = {"type": "function_call", "id": nid("fc_mock"), "call_id": nid("call_mock"), "name": name,
                "arguments": json.dumps(args), "status": "completed"}
        yield "response.output_item.added", {"type": "response.output_item.added", "output_index": 0,
                                             "item": dict(done, arguments="", status="in_progress")}
        yield "response.function_call_arguments.delta", {"type": "response.function_call_arguments.delta",
                                                         "item_id": done["id"], "output_index": 0,
                                                         "delta": done["arguments"]}
        yield "response.function_call_arguments.done", {"type": "response.function_call_arguments.done",
                                                        "item_id": done["id"], "output_index": 0,
                                                        "arguments": done["arguments"]}
        out_tok = approx_tokens(args)
    else:
        _, name, inp = plan
        done = {"type": "custom_tool_call", "id": nid("ctc_mock"), "call_id": nid("call_mock"), "name": name,
                "input": inp, "status": "completed"}
        yield "response.output_item.added", {"type": "response.output_item.added", "output_index": 0,
                                             "item": dict(done, input="", status="in_progress")}
        yield "response.custom_tool_call_input.delta", {"type": "response.custom_tool_call_input.delta",
                                                        "item_id": done["id"], "output_index": 0, "delta": inp}
        yield "response.custom_tool_call_input.done", {"type": "response.custom_tool_call_input.done",
                                                       "item_id": done["id"], "output_index": 0, "input": inp}
        out_tok = approx_tokens(inp)
    yield "response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": done}
    in_tok = approx_tokens(body.get("input"))
    final = dict(base, status="completed", output=[done], usage={
        "input_tokens": in_tok, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": out_tok, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": in_tok + out_tok})
    yield "response.completed", {"type": "response.completed", "response": final}


# --------------------------------------------------------------------------- Gemini


def gemini_plan(body):
    contents = body.get("contents") or []
    tools = set()
    for t in body.get("tools") or []:
        for fd in (t or {}).get("functionDeclarations") or []:
            if fd.get("name"):
                tools.add(fd["name"])
    gc = body.get("generationConfig") or body.get("config") or {}
    wants_json = gc.get("responseMimeType") == "application/json" or "responseSchema" in gc \
        or "responseJsonSchema" in gc
    if wants_json:
        return ("json", gemini_json_answer(gc))
    last = contents[-1] if contents else {}
    parts = last.get("parts") or []
    responses = [p["functionResponse"] for p in parts if isinstance(p, dict) and "functionResponse" in p]
    if responses:
        return ("text", final_text(json.dumps(responses[-1].get("response"))))
    user_texts = []
    for c in contents:
        if c.get("role") == "user":
            for p in c.get("parts") or []:
                if isinstance(p, dict) and isinstance(p.get("text"), str):
                    user_texts.append(p["text"])
    kind, arg = parse_directive(user_texts[-3:] if user_texts else [])
    if kind == "shell" and "run_shell_command" in tools:
        return ("tool", "run_shell_command", {"command": arg, "description": "Run the command the mock asked for"})
    if kind == "write" and "write_file" in tools:
        path, content = write_args(arg)
        return ("tool", "write_file", {"file_path": path, "content": content})
    if kind == "text" or not tools:
        return ("text", "MOCK: hello from the mock model.")
    return ("text", "MOCK: no matching tool offered for %s (tools: %s)." % (kind, ",".join(sorted(tools))))


def gemini_json_answer(gc):
    """Best effort answer for Gemini CLI's internal JSON calls (router, next speaker, ...)."""
    schema = gc.get("responseSchema") or gc.get("responseJsonSchema") or {}
    props = (schema.get("properties") or {}) if isinstance(schema, dict) else {}
    out = {}
    for k, v in props.items():
        typ = str((v or {}).get("type", "string")).lower()
        enum = (v or {}).get("enum")
        if enum:
            out[k] = enum[0]
        elif typ == "boolean":
            out[k] = False
        elif typ in ("number", "integer"):
            out[k] = max(1, (v or {}).get("minimum", 1))  # e.g. complexity_score is 1-100
        elif typ == "array":
            out[k] = []
        elif typ == "object":
            out[k] = {}
        else:
            out[k] = "mock"
    if "next_speaker" in out:
        out["next_speaker"] = "user"
    if "model_choice" in out:
        out["model_choice"] = "flash"
    return json.dumps(out)


def gemini_chunks(body, plan, model):
    in_tok = approx_tokens(body.get("contents"))

    def chunk(parts, finish=None, out_tok=0):
        cand = {"content": {"role": "model", "parts": parts}, "index": 0}
        if finish:
            cand["finishReason"] = finish
        c = {"candidates": [cand], "modelVersion": model, "responseId": nid("gresp_mock")}
        c["usageMetadata"] = {"promptTokenCount": in_tok, "candidatesTokenCount": out_tok,
                              "totalTokenCount": in_tok + out_tok}
        return c

    if plan[0] in ("text", "json"):
        text = plan[1]
        if plan[0] == "json":
            return [chunk([{"text": text}], "STOP", approx_tokens(text))]
        half = text.find(" ") + 1 or len(text) // 2  # first word, then the rest
        return [chunk([{"text": text[:half]}]), chunk([{"text": text[half:]}], "STOP", approx_tokens(text))]
    _, name, args = plan
    return [chunk([{"functionCall": {"name": name, "args": args}}], "STOP", approx_tokens(args))]


# --------------------------------------------------------------------------- HTTP


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "muxagent-mock/1"

    def log_message(self, fmt, *a):  # keep stderr quiet; everything goes to --log
        pass

    def _read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if self.headers.get("Content-Encoding") == "gzip" and raw:
            import gzip
            raw = gzip.decompress(raw)
        elif self.headers.get("Content-Encoding") == "zstd" and raw:
            return raw, {"_undecoded_zstd_bytes": len(raw)}
        try:
            return raw, json.loads(raw) if raw else None
        except ValueError:
            return raw, {"_raw": raw.decode("utf-8", "replace")[:10000]}

    def _log(self, body, answer):
        if not ARGS.log:
            return
        rec = {"t": round(time.time(), 3), "method": self.command, "path": self.path,
               "headers": {k: v for k, v in self.headers.items()
                           if k.lower() not in ("authorization", "x-api-key", "x-goog-api-key")},
               "body": body, "answer": answer}
        with LOG_LOCK, open(ARGS.log, "a") as f:
            f.write(json.dumps(rec) + "\n")

    def _json(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _sse_start(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def _sse(self, event, data):
        if event:
            self.wfile.write(("event: %s\n" % event).encode())
        self.wfile.write(("data: %s\n\n" % json.dumps(data)).encode())
        self.wfile.flush()
        if ARGS.chunk_delay:
            time.sleep(ARGS.chunk_delay)

    def do_HEAD(self):
        self._log(None, "200-empty")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        path = self.path.split("?")[0]
        self._log(None, "GET")
        if path.rstrip("/").endswith("/models"):
            return self._json(200, {"object": "list", "data": [], "models": []})
        return self._json(404, {"error": {"type": "not_found", "message": "mock: no such path " + path}})

    def do_POST(self):
        raw, body = self._read_body()
        body = body if isinstance(body, dict) else {}
        path = self.path.split("?")[0]
        try:
            if path.endswith("/v1/messages/count_tokens"):
                self._log(body, "count_tokens")
                return self._json(200, {"input_tokens": approx_tokens(body.get("messages"))})
            if path.endswith("/v1/messages"):
                plan = anthropic_plan(body)
                self._log(body, list(plan))
                if not body.get("stream"):
                    return self._json(200, anthropic_message(body, plan))
                self._sse_start()
                for ev, data in anthropic_events(body, plan):
                    self._sse(ev, data)
                return
            if path.endswith("/responses"):
                plan = openai_plan(body)
                self._log(body, list(plan))
                self._sse_start()
                for ev, data in openai_events(body, plan):
                    self._sse(ev, data)
                return
            m = re.search(r"/models/([^/:]+):(streamGenerateContent|generateContent|countTokens)$", path)
            if m:
                model, op = m.group(1), m.group(2)
                if op == "countTokens":
                    self._log(body, "countTokens")
                    return self._json(200, {"totalTokens": approx_tokens(body.get("contents"))})
                plan = gemini_plan(body)
                self._log(body, list(plan))
                chunks = gemini_chunks(body, plan, model)
                if op == "generateContent":
                    merged = chunks[-1]
                    if len(chunks) > 1:
                        text = "".join(p.get("text", "") for c in chunks
                                       for p in c["candidates"][0]["content"]["parts"])
                        merged["candidates"][0]["content"]["parts"] = [{"text": text}]
                    return self._json(200, merged)
                self._sse_start()
                for c in chunks:
                    self._sse(None, c)
                return
            self._log(body, "404")
            return self._json(404, {"error": {"type": "not_found", "message": "mock: no such path " + path}})
        except (BrokenPipeError, ConnectionResetError):
            return


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--log", help="append every request as one JSON line to this file")
    ap.add_argument("--port-file", help="write the port number to this file once listening")
    ap.add_argument("--max-seconds", type=float, default=300.0, help="exit after this long")
    ap.add_argument("--chunk-delay", type=float, default=0.0, help="sleep between SSE events")
    ARGS = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    srv.daemon_threads = True
    port = srv.server_address[1]
    if ARGS.port_file:
        tmp = ARGS.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, ARGS.port_file)
    print("PORT=%d" % port, flush=True)

    def stop_later():
        time.sleep(ARGS.max_seconds)
        sys.stderr.write("model_api: --max-seconds reached, exiting\n")
        os._exit(0)

    threading.Thread(target=stop_later, daemon=True).start()
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
