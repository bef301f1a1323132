"""The load generator of ``http_server.py``, run in its own process (not an example itself).

    python examples/_http_load.py PORT [--connections 1000] [--duration 60] [--max-requests N]

Opens every connection first, then keeps one request in flight on each
(HTTP/1.1 keep-alive, ``GET /items/<id>``) from one ``selectors`` loop,
until the duration or the request count is reached. It times each request
from its send to the last byte of its response, checks each response (status
200 and a JSON body naming the item asked for, or 503 and a JSON error: the
service refusing work is an answer, counted apart) and prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import time
from array import array
from typing import Any

from _measure import percentiles, raise_fd_limit

ITEMS = 10_000  # as in http_server.py
STALL = 10.0  # seconds without any response before giving up


class ClientConn:
    """One keep-alive connection, with one request in flight."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.data = bytearray()
        self.item = 0
        self.sent = 0.0

    def send(self, item: int) -> None:
        self.item = item
        self.sent = time.perf_counter()
        request = (
            b"GET /items/%d HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: shardpool-load\r\n"
            b"Accept: application/json\r\n\r\n" % item
        )
        if self.sock.send(request) != len(request):  # a small write fits the socket buffer
            raise OSError("short send")

    def response(self) -> tuple[int, bytes] | None:
        """(status, body) once the whole response is in, else None."""
        end = self.data.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = self.data[:end].decode("latin-1").lower()
        length = int(head.split("content-length:", 1)[1].split("\r\n", 1)[0])
        if len(self.data) < end + 4 + length:
            return None
        status = int(head[9:12])
        body = bytes(self.data[end + 4 : end + 4 + length])
        del self.data[: end + 4 + length]
        return status, body


def load(port: int, connections: int, duration: float, max_requests: int) -> dict[str, Any]:
    """Hold ``connections`` connections open and keep a request in flight on each."""
    raise_fd_limit()
    started = time.perf_counter()
    conns: list[ClientConn] = []
    for _ in range(connections):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        conns.append(ClientConn(sock))
    connect_seconds = time.perf_counter() - started
    sel = selectors.DefaultSelector()
    latencies = array("d")
    errors: list[str] = []  # the first few
    failed = issued = verified = refused = 0
    t0 = time.perf_counter()
    deadline = t0 + duration
    for conn in conns:
        sel.register(conn.sock, selectors.EVENT_READ, conn)
        conn.send(issued * 7919 % ITEMS)  # a spread of ids, the same in every run
        issued += 1
    active = len(conns)
    while active:
        events = sel.select(timeout=STALL)
        if not events:
            failed += active
            errors.append(f"no response in {STALL} s on {active} connections")
            break
        for key, _ in events:
            conn = key.data
            chunk = conn.sock.recv(65536)
            if not chunk:
                failed += 1
                errors.append("the server closed a connection")
                sel.unregister(conn.sock)
                active -= 1
                continue
            conn.data += chunk
            answer = conn.response()
            if answer is None:
                continue
            now = time.perf_counter()
            latencies.append((now - conn.sent) * 1e3)
            status, body = answer
            if status == 200 and json.loads(body)["name"] == f"item-{conn.item}":
                verified += 1
            elif status == 503 and "error" in json.loads(body):
                refused += 1  # the service is overloaded, and says so
            else:
                failed += 1
                if len(errors) < 10:
                    errors.append(f"/items/{conn.item}: {status} {body[:80]!r}")
            if now < deadline and issued < max_requests:
                conn.send(issued * 7919 % ITEMS)
                issued += 1
            else:
                sel.unregister(conn.sock)
                active -= 1
    seconds = time.perf_counter() - t0
    for conn in conns:
        conn.sock.close()
    return {
        "connections": connections,
        "connect_seconds": connect_seconds,
        "requests": len(latencies),
        "verified": verified,
        "refused": refused,
        "failed": failed,
        "errors": errors,
        "seconds": seconds,
        "latency_ms": percentiles(latencies),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=(__doc__ or "The load generator of http_server.py").splitlines()[0]
    )
    parser.add_argument("port", type=int)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--max-requests", type=int, default=25_000)
    args = parser.parse_args()
    print(json.dumps(load(args.port, args.connections, args.duration, args.max_requests)))
