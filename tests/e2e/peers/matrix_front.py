"""A front service of the parenting matrix (tests/e2e/test_parenting.py), untouched Python:

    python3 matrix_front.py threaded PORT BACKEND_BASE_URL   # ThreadingHTTPServer + urllib
    python3 matrix_front.py asyncio PORT BACKEND_BASE_URL    # aiohttp server + aiohttp client

GET /a/<id> calls the backend once and answers 200 when the backend did:
  threaded: GET /b/<id reversed> with urllib (a new connection per call, one thread per request):
            the outgoing path carries no forwarded id, so only the thread links the two;
  asyncio:  GET /b/<id> on a keep-alive aiohttp session: the id travels in the path, as it does
            through a proxy that forwards the path.
Prints {"listening": PORT} once it accepts.
"""
import json
import sys

MODE, PORT, BACKEND = sys.argv[1], int(sys.argv[2]), sys.argv[3]


def threaded() -> None:
    import urllib.request
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            ident = self.path.rsplit("/", 1)[-1]
            try:
                with urllib.request.urlopen(f"{BACKEND}/b/{ident[::-1]}", timeout=10) as r:
                    r.read()
                    status = 200
            except Exception:
                status = 502
            body = b"ok\n"
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    server.daemon_threads = True
    print(json.dumps({"listening": PORT}), flush=True)
    server.serve_forever()


def asyncio_front() -> None:
    import aiohttp
    from aiohttp import web

    async def on_startup(app):
        app["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))

    async def on_cleanup(app):
        await app["session"].close()

    async def handle(request):
        ident = request.match_info["ident"]
        async with request.app["session"].get(f"{BACKEND}/b/{ident}") as r:
            await r.read()
            return web.Response(text="ok\n", status=200 if r.status == 200 else 502)

    app = web.Application()
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_get("/a/{ident}", handle)
    print(json.dumps({"listening": PORT}), flush=True)
    web.run_app(app, host="127.0.0.1", port=PORT, print=None, access_log=None)


{"threaded": threaded, "asyncio": asyncio_front}[MODE]()
