"""A small HTTP/1.1 keep-alive server for threadline's end-to-end tests (Python 3 stdlib only).

    python3 http_peer.py PORT

Listens on 127.0.0.1:PORT, one thread per connection (ThreadingHTTPServer), HTTP/1.1 so
connections stay open between requests. Every answer names the request path in its body, so a
test can tell which response was paired with which request. Routes (GET, HEAD, POST):

    /status/NNN[/...]        status NNN, body "NNN <path>\n" (Content-Length)
    /chunked/A,B,C[/...]     200, Transfer-Encoding: chunked, chunks of A, B and C bytes and a
                             trailer field; decoded body size A+B+C
    /call?url=URL            fetches URL with urllib on the request thread, answers with its
                             status and "called <status>\n" (a service calling another)
    anything else            200, body "ok <path>\n"

POST bodies (Content-Length) are read and ignored.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tl-peer/1"

    def log_message(self, *args) -> None:  # keep the test output quiet
        pass

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _route(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        url = urllib.parse.urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        if len(parts) >= 2 and parts[0] == "status" and parts[1].isdigit():
            status = int(parts[1])
            self._send(status, f"{status} {url.path}\n".encode())
        elif len(parts) >= 2 and parts[0] == "chunked":
            self._chunked([int(x) for x in parts[1].split(",") if x])
        elif url.path == "/call":
            target = urllib.parse.parse_qs(url.query)["url"][0]
            try:
                with urllib.request.urlopen(target, timeout=10) as r:
                    r.read()
                    status = r.status
            except urllib.error.HTTPError as e:
                status = e.code
            self._send(200 if status < 400 else 502, f"called {status}\n".encode())
        else:
            self._send(200, f"ok {url.path}\n".encode())

    def _chunked(self, sizes: list[int]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Trailer", "X-Peer-Checksum")
        self.end_headers()
        for i, n in enumerate(sizes):
            body = bytes([ord("a") + i % 26]) * n
            self.wfile.write(b"%x\r\n" % n + body + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\nX-Peer-Checksum: %d\r\n\r\n" % sum(sizes))

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _route


def main() -> None:
    port = int(sys.argv[1])
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
