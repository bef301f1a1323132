"""A threaded HTTP/1.1 keep-alive service that takes what each request needs from pools.

    python examples/http_server.py                 # 25,000 requests on 1000 connections, pooled
    python examples/http_server.py --no-pool       # the identical server without pools
    python examples/http_server.py --quick         # a few seconds
    python examples/http_server.py --serve 60      # just serve for 60 s (0: until Ctrl-C)

The service answers ``GET /items/<id>`` with a JSON document read from a
SQLite database, the shape of many small web services. Each request needs:

- a receive buffer: a 64 KiB ``Block`` from a ``BlockPool``, filled by
  ``recv_into`` and held only while a request is read, not per connection;
- an ``Exchange`` (request and response state) from an ``ObjectPool``; it
  follows the Resetter protocol, so it comes back clean;
- a ``Buffer`` from a ``BufferPool`` to build the response in;
- a database connection from a bounded ``ObjectPool`` (2 connections shared
  by 4 worker threads: a request waits for one up to a timeout, else 503).

Without pools (``--no-pool``) the same code makes each of these anew per
request (``bytearray``, ``Exchange()``, ``bytearray()``,
``sqlite3.connect``), as a plain Python service does.
``--pool-except-backend`` pools everything but the database connection, to
tell what the connection pool is worth from what the other pools are.

One thread waits on a ``selectors`` loop for readable connections and hands
each to a worker thread; the worker reads and answers the request, then
hands the connection back. The load generator (``_http_load.py``) runs in
its own process: it holds every connection open with one request in flight
on each, times each request and checks each response, and stops after a
request count (or a time limit).
"""

from __future__ import annotations

import argparse
import json
import re
import selectors
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Generator
from contextlib import AbstractContextManager, closing, contextmanager, nullcontext, suppress
from functools import partial
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING, Any, Protocol, Self

from _measure import Measurement, ScenarioResult, parse_args, raise_fd_limit, report

from shardpool import BlockPool, BufferPool, ObjectPool, PoolTimeout

if TYPE_CHECKING:
    from typing_extensions import Buffer

RECV_SIZE = 64 * 1024  # a common socket read size (asyncio reads up to 256 KiB)
WORKERS = 4  # more threads only contend for the GIL: 8 served fewer requests/s
BACKENDS = 2  # database connections: fewer than workers, as is usual
BACKEND_TIMEOUT = 5.0
ITEMS = 10_000

HEAD_END = re.compile(rb"\r\n\r\n")
ITEM_PATH = re.compile(r"/items/(\d+)\Z")
REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


class Exchange:
    """One request and its response: reused through an ObjectPool (Resetter protocol)."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.reset()

    def reset(self) -> None:
        """Forget the last request: a pooled Exchange comes back like a new one."""
        self.method = self.target = ""
        self.headers.clear()
        self.keep_alive = True
        self.status = 0
        self.body = b""

    def parse(self, head: bytes) -> None:
        """Parse a request line and headers (raises ValueError if malformed)."""
        request_line, *lines = head.decode("latin-1").split("\r\n")
        self.method, self.target, version = request_line.split(" ")
        for line in lines:
            if line:
                name, sep, value = line.partition(":")
                if not sep:
                    raise ValueError(f"bad header line {line!r}")
                self.headers[name.strip().lower()] = value.strip()
        self.keep_alive = (
            version == "HTTP/1.1" and self.headers.get("connection", "").lower() != "close"
        )

    def write_response(self, out: Output) -> None:
        """Append the status line, headers and body to ``out``."""
        out += b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % (
            self.status,
            REASONS[self.status].encode(),
            len(self.body),
        )
        out += (
            b"Connection: keep-alive\r\n\r\n" if self.keep_alive else b"Connection: close\r\n\r\n"
        )
        out += self.body


class Output(Protocol):
    """What a response is built in: a pooled ``Buffer`` or a ``bytearray``."""

    def __iadd__(self, data: Buffer, /) -> Self: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...


def create_database(path: Path) -> None:
    """The backend's data: ITEMS rows of a small catalogue."""
    with closing(sqlite3.connect(path)) as db, db:
        db.execute(
            "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL, stock INTEGER, "
            "tags TEXT)"
        )
        db.executemany(
            "INSERT INTO items VALUES (?, ?, ?, ?, ?)",
            (
                (i, f"item-{i}", round(i * 0.37 % 500, 2), i * 7 % 100, f"t{i % 13},t{i % 7}")
                for i in range(ITEMS)
            ),
        )


class Backend:
    """A database client: costly to open (file, schema, statement cache), cheap to reuse.

    SQLite on a local file is the cheapest real backend there is; a network
    database connection costs milliseconds to open, not tens of microseconds.
    """

    def __init__(self, path: Path) -> None:
        # A pooled connection is used by one thread at a time, not always the same one.
        self.db = sqlite3.connect(path, check_same_thread=False)

    def item(self, item_id: int) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT id, name, price, stock, tags FROM items WHERE id = ?", (item_id,)
        ).fetchone()
        if row is None:
            return None
        return dict(zip(("id", "name", "price", "stock", "tags"), row, strict=True))

    def reset(self) -> None:
        """Resetter protocol: no transaction left open for the next user."""
        if self.db.in_transaction:
            self.db.rollback()

    def close(self) -> None:
        self.db.close()


class Resources:
    """Where a request's buffers and objects come from: pools, or new every time.

    This class is the whole difference between the pooled and the unpooled server.
    """

    recv_buffer: Callable[[], AbstractContextManager[Buffer]]
    exchange: Callable[[], AbstractContextManager[Exchange]]
    response_buffer: Callable[[], AbstractContextManager[Output]]
    backend: Callable[[], AbstractContextManager[Backend]]

    def __init__(self, db_path: Path, pool_objects: bool, pool_backend: bool) -> None:
        self.pools: dict[str, Any] = {}
        if pool_objects:
            blocks = BlockPool()
            exchanges = ObjectPool(Exchange)
            buffers = BufferPool()
            self.pools |= {"blocks": blocks, "exchanges": exchanges, "buffers": buffers}
            self.recv_buffer = partial(blocks.get, RECV_SIZE)
            self.exchange = exchanges.borrow
            self.response_buffer = buffers.get
        else:
            self.recv_buffer = lambda: nullcontext(bytearray(RECV_SIZE))
            self.exchange = lambda: nullcontext(Exchange())
            self.response_buffer = lambda: nullcontext(bytearray())
        if pool_backend:
            backends = ObjectPool(
                partial(Backend, db_path), max_size=BACKENDS, destroy=Backend.close
            )
            self.pools["backends"] = backends
            self.backend = partial(backends.borrow, timeout=BACKEND_TIMEOUT)
        else:
            self.backend = lambda: closing(Backend(db_path))

    def stats(self) -> dict[str, dict[str, Any]]:
        return {name: pool.stats().as_dict() for name, pool in self.pools.items()}

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()


class Server:
    """HTTP/1.1 with keep-alive: a selector thread dispatching to worker threads."""

    def __init__(self, resources: Resources, port: int = 0, workers: int = WORKERS) -> None:
        self.res = resources
        self.listener = socket.create_server(("127.0.0.1", port), backlog=4096)
        self.listener.setblocking(False)
        self.port: int = self.listener.getsockname()[1]
        self.selector = selectors.DefaultSelector()
        self.ready: SimpleQueue[socket.socket | None] = SimpleQueue()  # loop -> workers
        self.rearm: SimpleQueue[socket.socket] = SimpleQueue()  # workers -> loop
        self.wake_r, self.wake_w = socket.socketpair()  # wakes the loop for rearm
        self.wake_w.setblocking(False)  # a full pipe means the loop has wake-ups pending
        self.stopping = threading.Event()
        self.stopped = False
        self.lock = threading.Lock()
        self.open = self.max_open = 0
        self.served = [0] * workers  # one counter per worker: no lock needed
        self.threads = [threading.Thread(target=self._loop, name="http-loop")]
        self.threads += [
            threading.Thread(target=self._work, args=(i,), name=f"http-worker-{i}")
            for i in range(workers)
        ]

    def start(self) -> Server:
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> None:
        """Stops and joins every thread; calling it again does nothing."""
        if self.stopped:
            return
        self.stopped = True
        self.stopping.set()
        self._wake()
        self.threads[0].join()
        for _ in self.threads[1:]:
            self.ready.put(None)
        for t in self.threads[1:]:
            t.join()
        while True:  # connections handed back after the loop ended
            try:
                self._close(self.rearm.get_nowait())
            except Empty:
                break
        for sock in (self.listener, self.wake_r, self.wake_w):
            sock.close()

    def _wake(self) -> None:
        with suppress(BlockingIOError):
            self.wake_w.send(b"\0")

    def _loop(self) -> None:
        sel = self.selector
        sel.register(self.listener, selectors.EVENT_READ)
        sel.register(self.wake_r, selectors.EVENT_READ)
        while not self.stopping.is_set():
            for key, _ in sel.select(timeout=1.0):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self.listener:
                    self._accept()
                elif sock is self.wake_r:
                    self.wake_r.recv(4096)
                    while True:
                        try:
                            sel.register(self.rearm.get_nowait(), selectors.EVENT_READ)
                        except Empty:
                            break
                else:
                    # One worker at a time per connection: it is off the selector until handed back.
                    sel.unregister(sock)
                    self.ready.put(sock)
        for key in list(sel.get_map().values()):
            sel.unregister(key.fileobj)
            if key.fileobj not in (self.listener, self.wake_r):
                assert isinstance(key.fileobj, socket.socket)
                self._close(key.fileobj)
        sel.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except BlockingIOError:
                return
            conn.setblocking(True)  # workers block in recv (GIL released), bounded by a timeout
            conn.settimeout(10.0)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.open += 1
                self.max_open = max(self.max_open, self.open)
            self.selector.register(conn, selectors.EVENT_READ)

    def _close(self, conn: socket.socket) -> None:
        conn.close()
        with self.lock:
            self.open -= 1

    def _work(self, worker: int) -> None:
        while (conn := self.ready.get()) is not None:
            try:
                keep_open = self._read_and_answer(conn, worker)
            except OSError:  # reset by the peer, or a read timed out
                keep_open = False
            if keep_open:
                self.rearm.put(conn)
                self._wake()
            else:
                self._close(conn)

    def _read_and_answer(self, conn: socket.socket, worker: int) -> bool:
        """Read until every complete request is answered; False: close the connection."""
        with self.res.recv_buffer() as buf, memoryview(buf) as view:
            filled = 0
            while True:
                n = conn.recv_into(view[filled:])
                if n == 0:
                    return False  # the client closed
                filled += n
                start = 0
                while match := HEAD_END.search(view, start, filled):  # pipelined requests too
                    if not self._answer(conn, view[start : match.end()].tobytes()):
                        return False
                    self.served[worker] += 1
                    start = match.end()
                if start == filled:
                    return True  # wait for the next request off the worker
                if filled == len(view):
                    conn.sendall(b"HTTP/1.1 431 %s\r\n\r\n" % REASONS[431].encode())
                    return False
                view[: filled - start] = view[start:filled]  # keep the partial request
                filled -= start

    def _answer(self, conn: socket.socket, head: bytes) -> bool:
        with self.res.exchange() as ex:
            try:
                ex.parse(head)
                self._handle(ex)
            except ValueError:
                ex.status, ex.body, ex.keep_alive = 400, b'{"error":"bad request"}', False
            with self.res.response_buffer() as out:
                ex.write_response(out)
                conn.sendall(out)
            return ex.keep_alive

    def _handle(self, ex: Exchange) -> None:
        match = ITEM_PATH.match(ex.target)
        if ex.method != "GET":
            ex.status, ex.body = 405, b'{"error":"method not allowed"}'
            return
        if match is None:
            ex.status, ex.body = 404, b'{"error":"not found"}'
            return
        try:
            with self.res.backend() as db:
                item = db.item(int(match[1]))
        except PoolTimeout:
            ex.status, ex.body = 503, b'{"error":"busy"}'
            return
        if item is None:
            ex.status, ex.body = 404, b'{"error":"no such item"}'
        else:
            ex.status, ex.body = 200, json.dumps(item, separators=(",", ":")).encode()


# Running the scenario --------------------------------------------------------------------------


@contextmanager
def serving(
    pool_objects: bool, pool_backend: bool
) -> Generator[tuple[Server, Resources], None, None]:
    """A database, the resources and a started server; all gone on exit."""
    with tempfile.TemporaryDirectory() as tmp:
        db_path = Path(tmp) / "items.sqlite"
        create_database(db_path)
        resources = Resources(db_path, pool_objects, pool_backend)
        server = Server(resources).start()
        try:
            yield server, resources
        finally:
            server.stop()
            resources.close()


def run(
    pooled: bool,
    quick: bool,
    traced: bool = False,
    *,
    pool_backend: bool | None = None,
    connections: int = 1000,
) -> ScenarioResult:
    """Answer a fixed number of requests from ``connections`` clients; return the measurements."""
    pool_backend = pooled if pool_backend is None else pool_backend
    variant = "unpooled" if not pooled else "pooled" if pool_backend else "pooled-except-backend"
    max_requests, duration = (5_000, 30.0) if quick else (25_000, 60.0)  # whichever comes first
    measure = Measurement(traced)
    limit = raise_fd_limit()
    if limit < connections + 64:
        raise SystemExit(f"open-files limit {limit} is too low for {connections} connections")
    with serving(pooled, pool_backend) as (server, resources):
        with measure:
            client = subprocess.run(
                [
                    *(sys.executable, Path(__file__).with_name("_http_load.py"), str(server.port)),
                    *("--connections", str(connections), "--duration", str(duration)),
                    *("--max-requests", str(max_requests)),
                ],
                capture_output=True,
                text=True,
                timeout=duration + 120,
            )
        # Join the workers first: one may have sent its last response but not
        # yet given back what it borrowed.
        server.stop()
        stats = resources.stats()
    if client.returncode != 0:
        raise SystemExit(f"the load generator failed:\n{client.stderr}")
    got = json.loads(client.stdout)
    if got["failed"]:
        raise SystemExit(f"{got['failed']} requests failed: {got['errors']}")
    return measure.result(
        "http",
        variant,
        "requests",
        got["requests"],
        got["latency_ms"],
        got["verified"],
        checksum=str(got["verified"]),
        seconds=got["seconds"],  # the load generator's window, from first request to last
        details={
            "connections": connections,
            "max_open_connections": server.max_open,
            "served": sum(server.served),
            "connect_seconds": got["connect_seconds"],
            "pools": stats,
        },
    )


def serve(seconds: float, pool_objects: bool, pool_backend: bool) -> None:
    """Serve on a free port (printed first) for ``seconds``, or until SIGINT or SIGTERM."""
    raise_fd_limit()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _signum, _frame: stop.set())
    with serving(pool_objects, pool_backend) as (server, _):
        print(f"listening on http://127.0.0.1:{server.port}/items/1", flush=True)
        deadline = time.monotonic() + seconds if seconds > 0 else float("inf")
        while not stop.wait(0.2) and time.monotonic() < deadline:
            pass
    print(f"served {sum(server.served):,} requests, {server.max_open} connections at most")


def main(argv: list[str] | None = None) -> int:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--pool-except-backend",
            action="store_true",
            help="open a database connection per request",
        )
        parser.add_argument("--connections", type=int, default=1000, help="of the load generator")
        parser.add_argument(
            "--serve", type=float, metavar="SECONDS", help="only serve (0: forever)"
        )

    args = parse_args(__doc__, argv, options)
    if args.serve is not None:
        serve(args.serve, not args.no_pool, not (args.no_pool or args.pool_except_backend))
        return 0
    result = run(
        not args.no_pool,
        args.quick,
        args.tracemalloc,
        pool_backend=False if args.pool_except_backend else None,
        connections=args.connections,
    )
    return report(result, args.json)


if __name__ == "__main__":
    sys.exit(main())
