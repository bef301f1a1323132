"""A threaded HTTP/1.1 keep-alive service whose requests share a database through a pool.

    python examples/http_server.py                          # 15,000 requests, 1000 connections
    python examples/http_server.py --variant threadlocal    # one connection per worker thread
    python examples/http_server.py --no-pool                # a connection per request
    python examples/http_server.py --thread-per-connection  # 1000 threads, 5,000 requests
    python examples/http_server.py --quick                  # a smoke test
    python examples/http_server.py --serve 60               # just serve for 60 s (0: until Ctrl-C)

The service answers ``GET /items/<id>`` with a JSON document read from a
SQLite database, the shape of many small web services. A load generator
(``_http_load.py``, its own process) holds 1000 keep-alive connections open
with one request in flight on each. One thread waits on a ``selectors``
loop for readable connections and hands each to a worker thread, which
reads and answers its requests and hands it back.

The database stands for a database server: opening a connection costs
far more than a query on an open one, and it accepts at most 100
connections at once (``--backend-limit``, as PostgreSQL's
``max_connections`` does); one more is refused, and the request gets a 503.

Variants, where a request's database connection comes from:

- ``unpooled``: opened for the request, closed after it;
- ``threadlocal``: one per worker thread, opened on its first request and
  kept (``threading.local``), the reuse a plain Python service writes;
- ``pooled``: a bounded ``ObjectPool`` (``max_size=8``; a request waits for
  a connection up to a timeout, else 503). The pooled server also takes its
  other per-request objects from pools: a 64 KiB receive ``Block`` from a
  ``BlockPool``, the request/response ``Exchange`` from an ``ObjectPool``
  (Resetter protocol) and a response ``Buffer`` from a ``BufferPool``; the
  others make those anew per request.

With 4 worker threads (the default) every variant stays under the
backend's limit. With ``--thread-per-connection`` (as
``http.server.ThreadingHTTPServer`` and ``socketserver.ThreadingMixIn``
run: 1000 client connections, 1000 threads) one connection per thread
needs 1000, and only the pool keeps the count under the limit.
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
POOL_SIZE = 8  # database connections in the pool, at most
BACKEND_LIMIT = 100  # connections the database accepts at once (PostgreSQL's default)
BACKEND_TIMEOUT = 5.0
ITEMS = 10_000
VARIANTS = ["unpooled", "threadlocal", "pooled"]

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


class BackendRefused(ConnectionError):
    """The database refused a connection: it has as many open as it accepts."""


class Connections:
    """The database's side of the connections: how many are open, and its limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.lock = threading.Lock()
        self.open = self.most = self.opened = self.refused = 0

    def accept(self) -> None:
        with self.lock:
            if self.open >= self.limit:
                self.refused += 1
                raise BackendRefused(f"too many connections (the limit is {self.limit})")
            self.open += 1
            self.opened += 1
            self.most = max(self.most, self.open)

    def closed(self) -> None:
        with self.lock:
            self.open -= 1


class Backend:
    """A database client: costly to open (file, schema, statement cache), cheap to reuse.

    SQLite on a local file is the cheapest real backend there is; a network
    database connection costs milliseconds to open, not tens of microseconds.
    """

    def __init__(self, path: Path, server: Connections) -> None:
        server.accept()
        self.server = server
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
        self.server.closed()


class Resources:
    """Where a request's buffers and objects come from: pools, per thread, or new every time.

    This class is the whole difference between the variants of the server.
    """

    recv_buffer: Callable[[], AbstractContextManager[Buffer]]
    exchange: Callable[[], AbstractContextManager[Exchange]]
    response_buffer: Callable[[], AbstractContextManager[Output]]
    backend: Callable[[], AbstractContextManager[Backend]]

    def __init__(self, db_path: Path, variant: str, backend_limit: int = BACKEND_LIMIT) -> None:
        self.pools: dict[str, Any] = {}
        self.connections = Connections(backend_limit)
        self.kept: list[Backend] = []  # the thread-local connections, closed at the end
        open_backend = partial(Backend, db_path, self.connections)
        if variant == "pooled":
            blocks = BlockPool(name="receive")
            exchanges = ObjectPool(Exchange, name="exchanges")
            buffers = BufferPool(name="responses")
            backends = ObjectPool(
                open_backend, max_size=POOL_SIZE, destroy=Backend.close, name="backends"
            )
            self.pools = {
                "blocks": blocks,
                "exchanges": exchanges,
                "buffers": buffers,
                "backends": backends,
            }
            self.recv_buffer = partial(blocks.get, RECV_SIZE)
            self.exchange = exchanges.borrow
            self.response_buffer = buffers.get
            self.backend = partial(backends.borrow, timeout=BACKEND_TIMEOUT)
            return
        self.recv_buffer = lambda: nullcontext(bytearray(RECV_SIZE))
        self.exchange = lambda: nullcontext(Exchange())
        self.response_buffer = lambda: nullcontext(bytearray())
        if variant == "unpooled":
            self.backend = lambda: closing(open_backend())
            return
        local = threading.local()

        def per_thread() -> AbstractContextManager[Backend]:
            backend: Backend | None = getattr(local, "backend", None)
            if backend is None:
                backend = local.backend = open_backend()  # may raise BackendRefused
                self.kept.append(backend)
            return nullcontext(backend)

        self.backend = per_thread

    def stats(self) -> dict[str, dict[str, Any]]:
        return {name: pool.stats().as_dict() for name, pool in self.pools.items()}

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()
        for backend in self.kept:
            backend.close()


class Server:
    """HTTP/1.1 with keep-alive: a selector thread dispatching to worker threads, or (with
    ``thread_per_connection``) accepting and starting a thread for each connection."""

    def __init__(
        self,
        resources: Resources,
        port: int = 0,
        workers: int = WORKERS,
        thread_per_connection: bool = False,
    ) -> None:
        self.res = resources
        self.thread_per_connection = thread_per_connection
        self.connection_threads: list[threading.Thread] = []
        self.connections: set[socket.socket] = set()
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
        self.served: list[int] = []  # one counter per thread, written by that thread only
        self.threads = [threading.Thread(target=self._loop, name="http-loop")]
        if not thread_per_connection:
            self.served = [0] * workers
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
        with self.lock:
            still_open = list(self.connections)
        for conn in still_open:  # wakes their threads
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for t in self.connection_threads:
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
                self.connections.add(conn)
            if self.thread_per_connection:
                t = threading.Thread(target=self._serve_connection, args=(conn,))
                self.connection_threads.append(t)
                t.start()
            else:
                self.selector.register(conn, selectors.EVENT_READ)

    def _close(self, conn: socket.socket) -> None:
        with self.lock:
            self.open -= 1
            self.connections.discard(conn)
        conn.close()

    def _serve_connection(self, conn: socket.socket) -> None:
        """A connection's own thread: answer its requests until it closes."""
        with self.lock:
            self.served.append(0)  # this thread's counter
            counter = len(self.served) - 1
        try:
            # Wait for a request before taking a receive buffer, so idle
            # connections do not hold one.
            while conn.recv(1, socket.MSG_PEEK) and self._read_and_answer(conn, counter):
                pass
        except OSError:  # reset by the peer, a read timed out, or the server stopping
            pass
        self._close(conn)

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

    def _read_and_answer(self, conn: socket.socket, counter: int) -> bool:
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
                    self.served[counter] += 1
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
        except BackendRefused:
            ex.status, ex.body = 503, b'{"error":"database refused a connection"}'
            return
        if item is None:
            ex.status, ex.body = 404, b'{"error":"no such item"}'
        else:
            ex.status, ex.body = 200, json.dumps(item, separators=(",", ":")).encode()


# Running the scenario --------------------------------------------------------------------------


@contextmanager
def serving(
    variant: str, workers: int, thread_per_connection: bool, backend_limit: int
) -> Generator[tuple[Server, Resources], None, None]:
    """A database, the resources and a started server; all gone on exit."""
    with tempfile.TemporaryDirectory() as tmp:
        db_path = Path(tmp) / "items.sqlite"
        create_database(db_path)
        resources = Resources(db_path, variant, backend_limit)
        server = Server(
            resources, workers=workers, thread_per_connection=thread_per_connection
        ).start()
        try:
            yield server, resources
        finally:
            server.stop()
            resources.close()


def run(
    variant: str,
    quick: bool,
    *,
    workers: int = WORKERS,
    thread_per_connection: bool = False,
    connections: int = 1000,
    backend_limit: int = BACKEND_LIMIT,
) -> ScenarioResult:
    """Answer a fixed number of requests from ``connections`` clients; return the measurements."""
    # Whichever comes first: a request count or a time limit. A thread per
    # connection costs more CPU per request (1000 threads contend for the GIL).
    max_requests = (3_000 if quick else 15_000) // (3 if thread_per_connection else 1)
    duration = 30.0 if quick else 60.0
    measure = Measurement()
    limit = raise_fd_limit()
    if limit < connections + 64:
        raise SystemExit(f"open-files limit {limit} is too low for {connections} connections")
    with serving(variant, workers, thread_per_connection, backend_limit) as (server, resources):
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
        backend = resources.connections
    if client.returncode != 0:
        raise SystemExit(f"the load generator failed:\n{client.stderr}")
    got = json.loads(client.stdout)
    if got["failed"]:
        raise SystemExit(f"{got['failed']} requests failed: {got['errors']}")
    return measure.result(
        "http-thread-per-connection" if thread_per_connection else "http",
        variant,
        "requests",
        got["requests"],
        got["latency_ms"],
        got["verified"] + got["refused"],
        checksum=str(got["requests"]),  # every request answered, with its item or a 503
        seconds=got["seconds"],  # the load generator's window, from first request to last
        details={
            "connections": connections,
            "threads": len(server.served),
            "max_open_connections": server.max_open,
            "served": sum(server.served),
            "answered_200": got["verified"],
            "answered_503": got["refused"],
            "backend_limit": backend.limit,
            "backend_connections_opened": backend.opened,
            "backend_connections_most": backend.most,
            "backend_connections_refused": backend.refused,
            "connect_seconds": got["connect_seconds"],
            "pools": stats,
        },
    )


def serve(
    seconds: float, variant: str, workers: int, thread_per_connection: bool, backend_limit: int
) -> None:
    """Serve on a free port (printed first) for ``seconds``, or until SIGINT or SIGTERM."""
    raise_fd_limit()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _signum, _frame: stop.set())
    with serving(variant, workers, thread_per_connection, backend_limit) as (server, _):
        print(f"listening on http://127.0.0.1:{server.port}/items/1", flush=True)
        deadline = time.monotonic() + seconds if seconds > 0 else float("inf")
        while not stop.wait(0.2) and time.monotonic() < deadline:
            pass
    print(f"served {sum(server.served):,} requests, {server.max_open} connections at most")


def main(argv: list[str] | None = None) -> int:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--workers", type=int, default=WORKERS, help="worker threads")
        parser.add_argument(
            "--thread-per-connection",
            action="store_true",
            help="a thread for each client connection instead of --workers",
        )
        parser.add_argument("--connections", type=int, default=1000, help="of the load generator")
        parser.add_argument(
            "--backend-limit",
            type=int,
            default=BACKEND_LIMIT,
            help="connections the database accepts at once",
        )
        parser.add_argument(
            "--serve", type=float, metavar="SECONDS", help="only serve (0: forever)"
        )

    args = parse_args(__doc__, VARIANTS, argv, options)
    if args.serve is not None:
        serve(
            args.serve,
            args.variant,
            args.workers,
            args.thread_per_connection,
            args.backend_limit,
        )
        return 0
    result = run(
        args.variant,
        args.quick,
        workers=args.workers,
        thread_per_connection=args.thread_per_connection,
        connections=args.connections,
        backend_limit=args.backend_limit,
    )
    d = result.details
    status = report(result, args.json)
    print(
        f"answered {d['answered_200']:,} with the item and {d['answered_503']:,} with 503; "
        f"database connections: {d['backend_connections_opened']:,} opened, "
        f"{d['backend_connections_most']} open at once at most (limit {d['backend_limit']}), "
        f"{d['backend_connections_refused']:,} refused"
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
