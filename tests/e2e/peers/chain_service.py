"""One hop of the injection chain (tests/e2e/test_inject.py), an untouched Python service.

    python3 chain_service.py PORT DOWNSTREAM_BASE_URL

Serves GET on 0.0.0.0:PORT, one thread per request (http.server's ThreadingHTTPServer): each
request is forwarded as a GET of DOWNSTREAM_BASE_URL + path with urllib (no tracing code, no
headers of its own), and the downstream body is returned as is. Prints {"listening": PORT}.
With FORWARD_TRACEPARENT=1 in its environment it passes the incoming `traceparent` header on,
as an instrumented service would (tests/e2e/test_web_view.py).
HTTPS: with CHAIN_TLS_CERT and CHAIN_TLS_KEY (PEM files) set it serves TLS; an https downstream
is verified against SSL_CERT_FILE (OpenSSL's variable).
"""
import json
import os
import ssl
import sys
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1])
DOWNSTREAM = sys.argv[2]
FORWARD_TRACEPARENT = os.environ.get("FORWARD_TRACEPARENT") == "1"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        headers = {}
        if FORWARD_TRACEPARENT and self.headers.get("traceparent"):
            headers["traceparent"] = self.headers["traceparent"]
        try:
            req = urllib.request.Request(DOWNSTREAM + self.path, headers=headers)
            with urllib.request.urlopen(req, timeout=10) as r:
                body, status = r.read(), 200
        except Exception as e:  # the test reads the message
            body, status = f"python: downstream failed: {e}".encode(), 502
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
if os.environ.get("CHAIN_TLS_CERT"):
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(os.environ["CHAIN_TLS_CERT"], os.environ["CHAIN_TLS_KEY"])
    server.socket = tls.wrap_socket(server.socket, server_side=True)
print(json.dumps({"listening": PORT}), flush=True)
server.serve_forever()
