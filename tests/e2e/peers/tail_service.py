"""The service of tests/e2e/test_tail_keep.py (Python 3 stdlib only): a front that calls a leaf,
fails one request in 50 and is slow on two routes.

    python3 tail_service.py front PORT LEAF_PORT
    python3 tail_service.py leaf PORT

HTTP/1.1 keep-alive, one thread per connection (ThreadingHTTPServer). Front routes:

    /work?n=N     calls the leaf (GET /leaf?n=N, a new connection), then answers 500 when N is a
                  multiple of 50, else 200: the leaf's part of a failing request is fine
    /slow, /medium  answer 200 after 300 ms
The leaf answers 200 to everything.
"""

from __future__ import annotations

import http.client
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LEAF_PORT = 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        url = urllib.parse.urlsplit(self.path)
        if LEAF_PORT == 0:
            self._send(200, b"leaf ok\n")
            return
        if url.path == "/work":
            n = int(urllib.parse.parse_qs(url.query).get("n", ["1"])[0])
            conn = http.client.HTTPConnection("127.0.0.1", LEAF_PORT, timeout=10)
            conn.request("GET", f"/leaf?n={n}")
            conn.getresponse().read()
            conn.close()
            self._send(500 if n % 50 == 0 else 200, b"work\n")
        elif url.path in ("/slow", "/medium"):
            time.sleep(0.3)
            self._send(200, b"took 300 ms\n")
        else:
            self._send(404, b"no such route\n")


def main() -> None:
    global LEAF_PORT
    role, port = sys.argv[1], int(sys.argv[2])
    if role == "front":
        LEAF_PORT = int(sys.argv[3])
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
