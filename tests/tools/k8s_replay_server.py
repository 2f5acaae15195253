#!/usr/bin/env python3
"""A stand-in Kubernetes API server that replays recorded answers (tests/fixtures/k8s/).

No cluster runs on the test machines, so the metadata client is tested against this: it
answers LIST and WATCH of pods and GETs of ReplicaSets/Jobs from a scenario, and logs every
request it gets so a test can check what the client asked (field selector, resourceVersion,
bearer token).

Scenario (JSON file):
  {
    "list":  [ {"status": 200, "file": "pod_list.json"}, ... ],      # one per LIST, last repeats
    "watch": [ {"status": 200, "stream": "watch_events.jsonl",       # one per WATCH, last repeats
                "end": "hang" | "close" | "drop" | "follow"},
               {"status": 410, "file": "status_410.json"}, ... ],
    "get":   { "/apis/apps/v1/namespaces/shop/replicasets/x": {"status": 200, "file": "..."} }
  }
A watch stream is sent with chunked transfer encoding, one chunk per line, as the API server
does. "end": "close" ends the response (the server's timeoutSeconds), "hang" keeps the
connection open and silent until the client goes, "drop" closes the socket without the final
chunk (a dropped connection; the file may end in the middle of a line), "follow" goes on sending
the lines a test appends to the stream file until the client goes. Unknown GET paths get a
404 Status.

  k8s_replay_server.py --scenario S.json --fixtures DIR [--port 0] [--log requests.jsonl]

Prints "listening on <port>" on stdout once it accepts connections. Python stdlib only.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HANG_LIMIT_S = 120.0


class Replay:
    def __init__(self, scenario: dict, fixtures: str, log_path: str | None):
        self.scenario = scenario
        self.fixtures = fixtures
        self.log_path = log_path
        self.lock = threading.Lock()
        self.counts = {"list": 0, "watch": 0}

    def next_answer(self, kind: str) -> dict:
        with self.lock:
            answers = self.scenario.get(kind) or [{"status": 500}]
            i = min(self.counts[kind], len(answers) - 1)
            self.counts[kind] += 1
            return answers[i]

    def read(self, name: str) -> bytes:
        with open(os.path.join(self.fixtures, name), "rb") as f:
            return f.read()

    def log(self, entry: dict) -> None:
        if not self.log_path:
            return
        with self.lock, open(self.log_path, "a") as f:
            f.write(json.dumps(entry) + "\n")


def status_body(code: int, message: str) -> bytes:
    return json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                       "message": message, "code": code}).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    replay: Replay  # set on the class by main()

    def log_message(self, fmt, *args):  # quiet: the request log says it all
        pass

    def do_GET(self):
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        is_watch = query.get("watch") in ("1", "true")
        self.replay.log({"path": url.path, "query": query,
                         "authorization": self.headers.get("Authorization", ""),
                         "accept": self.headers.get("Accept", ""), "time": time.time()})
        if url.path == "/api/v1/pods":
            answer = self.replay.next_answer("watch" if is_watch else "list")
        else:
            answer = (self.replay.scenario.get("get") or {}).get(url.path)
            if answer is None:
                return self.send_body(404, status_body(404, f"{url.path} not found"))
        if "stream" in answer:
            return self.send_stream(answer)
        body = self.replay.read(answer["file"]) if "file" in answer else status_body(
            answer.get("status", 500), "scripted")
        self.send_body(answer.get("status", 200), body)

    def send_body(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_stream(self, answer: dict) -> None:
        self.send_response(answer.get("status", 200))
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        data = self.replay.read(answer["stream"]).decode()
        try:
            for piece in data.splitlines(keepends=True):
                raw = piece.encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(raw), raw))
                self.wfile.flush()
                time.sleep(0.02)  # events arrive one by one, as from a real watch
            end = answer.get("end", "close")
            if end == "follow":
                self.follow(answer["stream"], len(data.encode()))
                self.close_connection = True
                return
            if end == "drop":
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if end == "hang":
                self.wait_client_gone()
                self.close_connection = True
                return
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def follow(self, name: str, offset: int) -> None:
        """Like `tail -f`: sends each complete line appended to the stream file after `offset`
        (a test writes events while the client watches), until the client goes."""
        path = os.path.join(self.replay.fixtures, name)
        pending = b""
        deadline = time.monotonic() + HANG_LIMIT_S
        while time.monotonic() < deadline:
            with open(path, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            offset += len(chunk)
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                raw = line + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(raw), raw))
                self.wfile.flush()
            readable, _, _ = select.select([self.connection], [], [], 0.05)
            if readable and not self.connection.recv(1, 0):
                return

    def wait_client_gone(self) -> None:
        deadline = time.monotonic() + HANG_LIMIT_S
        while time.monotonic() < deadline:
            readable, _, _ = select.select([self.connection], [], [], 0.2)
            if readable and not self.connection.recv(1, 0):
                return


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--fixtures", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--log")
    args = ap.parse_args()
    with open(args.scenario) as f:
        scenario = json.load(f)
    Handler.replay = Replay(scenario, args.fixtures, args.log)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"listening on {server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
