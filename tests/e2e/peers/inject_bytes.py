"""Byte-exactness peer for traceparent injection (tests/e2e/test_inject.py).

    python3 inject_bytes.py server PORT
    python3 inject_bytes.py client PORT CONNECTIONS REQUESTS_PER_CONNECTION

Both sides generate request i from i alone (method, path, headers, body of up to 300 KB, an
application traceparent on every 7th), so the server knows exactly what the client wrote. The
client sends over keep-alive connections, one write per round, some rounds pipelined (2 or 3
requests in one write), and checks every response body. The server accepts a request only if
it equals what the client wrote, or that plus exactly one `traceparent: 00-<32 hex>-<16 hex>-01`
line right after the request line; it prints one JSON line per request
{"id", "ok", "injected", "error"}. The client prints {"sent", "expect_injected", "errors"} at the
end: the requests that started a write and carried no traceparent of their own.
"""
import json
import re
import socket
import sys
import threading

TP_LINE = re.compile(rb"traceparent: 00-[0-9a-f]{32}-[0-9a-f]{16}-01\r\n")
BODY_SIZES = [0, 100, 5000, 70000, 300000, 1]
RESPONSE_SIZES = [10, 1000, 200000, 64 * 1024 + 3]


def pattern(n, seed):
    unit = bytes((97 + (seed * 7 + k) % 26) for k in range(26)) + b"\r\n\x00\xff"
    return (unit * (n // len(unit) + 1))[:n]


def request(i):
    body = pattern(BODY_SIZES[i % len(BODY_SIZES)], i) if i % 2 else b""
    method = b"POST" if i % 2 else b"GET"
    head = [method + b" /bytes/" + str(i).encode() + b"?q=" + str(i * 31).encode() + b" HTTP/1.1",
            b"Host: inject-bytes", b"X-Req-Id: " + str(i).encode(),
            b"X-Mixed-Case: Keep-Me   ", b"user-agent: inject-bytes/1"]
    if i % 7 == 3:
        head.append(b"traceparent: 00-" + b"%032x" % (i + 1) + b"-" + b"%016x" % (i + 7) + b"-01")
    if body or method == b"POST":
        head.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def response(i):
    body = pattern(RESPONSE_SIZES[i % len(RESPONSE_SIZES)], i + 5)
    return b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body


class Reader:
    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def fill(self):
        data = self.sock.recv(1 << 18)
        if not data:
            raise EOFError
        self.buf += data

    def until(self, marker):
        while marker not in self.buf:
            self.fill()
        at = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:at], self.buf[at:]
        return out

    def exactly(self, n):
        while len(self.buf) < n:
            self.fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def serve_connection(conn, lock):
    r = Reader(conn)
    try:
        while True:
            head = r.until(b"\r\n\r\n")
            m = re.search(rb"\r\nX-Req-Id: (\d+)\r\n", head)
            if not m:
                with lock:
                    print(json.dumps({"id": None, "ok": False, "error": "no X-Req-Id: " + repr(head[:200])}), flush=True)
                return
            i = int(m.group(1))
            want = request(i)
            want_head_len = want.index(b"\r\n\r\n") + 4
            line_end = head.index(b"\r\n") + 2
            injected = False
            got_head = head
            tp = TP_LINE.match(head, line_end)
            if tp and not want[line_end:].startswith(tp.group(0)):
                injected = True
                got_head = head[:line_end] + head[tp.end():]
            body = r.exactly(len(want) - want_head_len)
            ok = got_head + body == want
            err = "" if ok else f"request {i} altered: head {got_head[:300]!r} vs {want[:want_head_len][:300]!r}"
            with lock:
                print(json.dumps({"id": i, "ok": ok, "injected": injected, "error": err}), flush=True)
            conn.sendall(response(i))
    except (EOFError, ConnectionError):
        return
    finally:
        conn.close()


def server(port):
    lock = threading.Lock()
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(64)
    print(json.dumps({"listening": port}), flush=True)
    while True:
        conn, _ = ls.accept()
        threading.Thread(target=serve_connection, args=(conn, lock), daemon=True).start()


def client(port, conns, per_conn):
    errors, expect_injected, sent = [], [], []
    lock = threading.Lock()

    def run(c):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        r = Reader(s)
        ids = list(range(c * per_conn, (c + 1) * per_conn))
        k = 0
        while k < len(ids):
            depth = [1, 1, 3, 1, 2][k % 5]
            batch = ids[k:k + depth]
            k += depth
            s.sendall(b"".join(request(i) for i in batch))
            with lock:
                sent.extend(batch)
                if request(batch[0]).find(b"\r\ntraceparent:") < 0:
                    expect_injected.append(batch[0])
            for i in batch:
                want = response(i)
                head = r.until(b"\r\n\r\n")
                got = head + r.exactly(len(want) - len(head))
                if got != want:
                    with lock:
                        errors.append(f"response {i} altered")
        s.close()

    threads = [threading.Thread(target=run, args=(c,)) for c in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"sent": sorted(sent), "expect_injected": sorted(expect_injected), "errors": errors}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(int(sys.argv[2]))
    else:
        client(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
