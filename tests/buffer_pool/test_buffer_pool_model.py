"""The BufferPool against its model (see tests/pool_models.py): every
counter, and every holder's bytes, after every step."""

from __future__ import annotations

import warnings
from collections import deque

import numpy as np
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    initialize,
    invariant,
    precondition,
    rule,
)

from shardpool import (
    DEFAULT_MAX_IDLE,
    Buffer,
    BufferPool,
    PoolClosed,
)

from helpers import OBJECT_COUNTERS
from pool_models import (
    Counts,
    LeaseMachine,
    call,
    check_outstanding,
    close_and_check,
    machine_settings,
)


class HeldBuffer:
    """A buffer out of the pool, and what keeps its bytes from the pool (see
    ``Held``). ``memory`` models the allocation the bytes are in: a write
    that outgrows an exported buffer moves them to a new one, and a raw
    array keeps reading the old one, which must stay alive."""

    def __init__(self, buf: Buffer) -> None:
        self.obj: Buffer | None = buf
        self.content = bytearray()
        self.memory = bytearray()
        self.views: list = []
        self.raw: list[tuple[np.ndarray, bytearray]] = []
        self.exported = False
        self.capacity = 0  # when released

    def expected(self) -> bytes:
        """What a view of the buffer reads."""
        return bytes(self.content)


DATA = st.one_of(
    st.binary(max_size=300),
    st.binary(min_size=4000, max_size=6000),
).flatmap(lambda b: st.sampled_from([b, bytearray(b), memoryview(b), np.frombuffer(b, np.uint8)]))


class BufferPoolMachine(LeaseMachine):
    """BufferPool: buffers that come back cleared with their capacity, kept
    up to max_idle and max_capacity, exports that freeze a buffer, raw
    arrays that keep the address without an export (so an exported buffer's
    bytes never move or go back while its object lives), abandoned buffers,
    close, and every refusal. (Fewer than 1000 returns: the calibration
    never kicks in here; it has its own tests in test_buffer_pool.py.)"""

    KIND = "buffer"

    @initialize(
        max_idle=st.none() | st.integers(0, 3),
        max_capacity=st.sampled_from([None, 0, 100, 5000]),
        shards=st.integers(1, 2),
        idle_timeout=st.sampled_from([None, 3600.0]),
        track=st.booleans(),
    )
    def make_pool(self, max_idle, max_capacity, shards, idle_timeout, track):
        self.track = track
        self.pool = BufferPool(
            max_idle=max_idle,
            max_capacity=max_capacity,
            shards=shards,
            idle_timeout=idle_timeout,
            track=track,
        )
        self.cap = DEFAULT_MAX_IDLE if max_idle is None else max_idle
        self.max_capacity = 16 << 20 if max_capacity is None else max_capacity
        self.fifo = shards == 1
        self.idle: list[int | None] = []  # capacities of the idle buffers
        self.m = Counts()
        self.held: list[HeldBuffer] = []  # the holder has not let go
        self.released: list[HeldBuffer] = []  # let go; the bytes are not back yet
        self.gone: deque[Buffer] = deque(maxlen=3)  # released, bytes back
        self.closed = False
        self.other = BufferPool()
        self.foreign = self.other.get()

    def give_back(self, capacity: int) -> None:
        self.m.bump("puts")
        if self.closed:
            self.m.bump("destroyed")
        elif capacity <= self.max_capacity and len(self.idle) < self.cap:
            self.idle.append(capacity)
        else:
            self.m.bump("dropped")
            self.m.bump("destroyed")

    def let_go(self, h: HeldBuffer) -> None:
        """The holder released `h` (a release, a put or a `with` exit)."""
        assert h.obj is not None
        assert h.obj.released
        self.held.remove(h)
        if h.exported:
            self.released.append(h)
        else:
            self.give_back(h.capacity)
            self.gone.append(h.obj)

    def maybe_back(self, h: HeldBuffer) -> None:
        if h in self.released and h.obj is None and not h.views and not h.raw:
            self.released.remove(h)
            self.give_back(h.capacity)

    def check_contents(self, h: HeldBuffer) -> None:
        assert h.obj.getvalue() == bytes(h.content)
        assert len(h.obj) == len(h.content)
        assert h.obj.capacity >= len(h.content)
        assert not h.obj.released

    @rule()
    def get(self):
        value, exc = call(self.pool.get)
        if self.closed:
            assert isinstance(exc, PoolClosed), exc
            return
        assert exc is None, exc
        buf = value
        if self.idle:
            self.m.hit()
            if self.fifo:
                assert buf.capacity == self.idle.pop(0), "not the oldest idle buffer"
            elif buf.capacity in self.idle:
                self.idle.remove(buf.capacity)
            else:
                # Only after a trim whose choice the model could not see.
                self.idle.remove(None)
        else:
            self.m.miss()
            assert buf.capacity == min(self.pool.typical_capacity, self.max_capacity)
        h = HeldBuffer(buf)
        self.check_contents(h)  # empty: nothing of the last holder's left
        self.held.append(h)

    @precondition(lambda self: self.held)
    @rule(data=st.data(), payload=DATA, how=st.sampled_from(["write", "extend", "+="]))
    def write(self, data, payload, how):
        h = self.pick(data, self.held)
        n = len(bytes(payload))
        if h.views:
            with pytest.raises(BufferError, match="view"):
                h.obj.write(payload)
            return
        capacity = h.obj.capacity
        if how == "write":
            assert h.obj.write(payload) == n
        elif how == "extend":
            assert h.obj.extend(payload) is None
        else:
            buf = h.obj
            buf += payload
            assert buf is h.obj
        if h.obj.capacity != capacity:
            # Moved to a new allocation; raw arrays keep the old one.
            h.memory = bytearray(h.content)
        h.memory[len(h.content) : len(h.content) + n] = bytes(payload)
        h.content += bytes(payload)
        self.check_contents(h)

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def clear_buffer(self, data):
        h = self.pick(data, self.held)
        capacity = h.obj.capacity
        if h.views:
            with pytest.raises(BufferError):
                h.obj.clear()
            return
        h.obj.clear()
        h.content.clear()  # the allocation keeps its bytes
        assert h.obj.capacity == capacity
        self.check_contents(h)

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def export(self, data):
        h = self.pick(data, self.held)
        view = memoryview(h.obj)
        assert view.readonly
        assert bytes(view) == bytes(h.content)
        h.views.append(view)
        h.exported = True
        with pytest.raises(BufferError):
            h.obj.write(h.obj)  # into itself: frozen while exported

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def raw_view(self, data):
        """``np.ndarray(buffer=buf)``: the address, and a reference to the
        buffer, but no export (so writes are allowed afterwards)."""
        h = self.pick(data, self.held)
        raw = np.ndarray((len(h.content),), np.uint8, buffer=h.obj)
        assert raw.base is h.obj
        assert not raw.flags.writeable
        assert bytes(raw) == bytes(h.content)
        h.raw.append((raw, h.memory))
        h.exported = True

    @precondition(lambda self: any(h.raw for h in self.held + self.released))
    @rule(data=st.data())
    def drop_raw(self, data):
        h = self.pick(data, [h for h in self.held + self.released if h.raw])
        raw, memory = h.raw.pop()
        assert bytes(raw) == bytes(memory[: len(raw)])
        del raw
        self.maybe_back(h)

    @precondition(lambda self: self.held)
    @rule(data=st.data(), how=st.sampled_from(["release", "pool.put"]))
    def release(self, data, how):
        h = self.pick(data, self.held)
        capacity = h.obj.capacity
        give = Buffer.release if how == "release" else self.pool.put
        if h.views:
            with pytest.raises(BufferError, match="view"):
                give(h.obj)
            self.check_contents(h)
            return
        give(h.obj)
        h.capacity = capacity
        self.let_go(h)

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def leave_with(self, data):
        h = self.pick(data, self.held)
        h.capacity = h.obj.capacity
        assert h.obj.__exit__(None, None, None) is False
        self.let_go(h)

    @precondition(lambda self: any(not h.views and not h.raw for h in self.held))
    @rule(data=st.data())
    def abandon(self, data):
        h = self.pick(data, [h for h in self.held if not h.views and not h.raw])
        self.held.remove(h)
        capacity = h.obj.capacity
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            h.obj = None
        assert [w.category for w in caught] == [ResourceWarning]
        assert f"holding {len(h.content)} bytes" in str(caught[0].message)
        self.give_back(capacity)

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def refusals_of_a_held_buffer(self, data):
        h = self.pick(data, self.held)
        with pytest.raises(ValueError, match="another BufferPool"):
            self.other.put(h.obj)
        with pytest.raises(ValueError, match="another BufferPool"):
            self.pool.put(self.foreign)
        with pytest.raises(TypeError, match="bytes-like"):
            h.obj.write("text")
        self.check_contents(h)

    @precondition(lambda self: self.released_objects())
    @rule(
        data=st.data(),
        what=st.sampled_from(
            ["write", "getvalue", "len", "capacity", "clear", "release", "put", "export", "enter"]
        ),
    )
    def use_after_release(self, data, what):
        buf = self.pick(data, self.released_objects())
        assert buf.released
        calls = {
            "write": (lambda: buf.write(b"x"), ValueError),
            "getvalue": (buf.getvalue, ValueError),
            "len": (lambda: len(buf), ValueError),
            "capacity": (lambda: buf.capacity, ValueError),
            "clear": (buf.clear, ValueError),
            "release": (buf.release, ValueError),
            "put": (lambda: self.pool.put(buf), ValueError),
            "export": (lambda: memoryview(buf), BufferError),
            "enter": (buf.__enter__, ValueError),
        }
        fn, error = calls[what]
        with pytest.raises(error, match="released"):
            fn()
        assert buf.__exit__(None, None, None) is False  # a no-op once released

    @rule(keep=st.integers(0, 3))
    def trim(self, keep):
        surplus = max(0, len(self.idle) - keep)
        assert self.pool.trim(keep) == surplus
        for _ in range(surplus):
            self.m.bump("destroyed")
        if self.fifo:
            del self.idle[:surplus]  # the oldest
        elif surplus:
            # With several shards the model cannot see which buffers a trim
            # kept: it keeps their number, and forgets their capacities.
            self.idle = [None] * (len(self.idle) - surplus)

    @rule()
    def clear(self):
        n = len(self.idle)
        assert self.pool.clear() == n
        for _ in range(n):
            self.m.bump("destroyed")
        self.idle = []

    @rule()
    def close(self):
        close_and_check(self.pool, self.track, len(self.held))
        for _ in self.idle:
            self.m.bump("destroyed")
        self.idle = []
        self.closed = True

    @invariant()
    def stats_match_the_model(self):
        s = self.pool.stats()
        self.m.sample()
        d = s.as_dict()
        for name in OBJECT_COUNTERS:
            assert getattr(s, name) == self.m[name] == d[name], name
        out = len(self.held) + len(self.released)
        assert s.in_use == self.m.in_use == out == d["in_use"]
        assert s.idle == len(self.idle) == len(self.pool) == d["idle"]
        assert s.max_in_use == self.m.peak == d["max_in_use"]
        assert s.created == s.destroyed + s.idle + s.in_use
        assert self.pool.closed == self.closed
        check_outstanding(self.pool, self.track, len(self.held))
        assert self.pool.typical_capacity == 4096
        assert self.pool.large_capacity is None
        for h in self.held:
            self.check_contents(h)
        for h in self.held + self.released:
            for view in h.views:
                assert bytes(view) == bytes(h.content)
            for raw, memory in h.raw:
                assert bytes(raw) == bytes(memory[: len(raw)]), "a raw array reads lost memory"


BufferPoolMachine.TestCase.settings = machine_settings(examples=200, steps=40)
test_buffer_pool_model = BufferPoolMachine.TestCase
