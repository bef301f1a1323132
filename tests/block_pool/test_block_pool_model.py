"""The BlockPool against its model (see tests/pool_models.py): every
counter and class row, and every holder's bytes, after every step."""

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
    Block,
    BlockPool,
    PoolClosed,
)

from helpers import address
from pool_models import (
    LeaseMachine,
    call,
    check_outstanding,
    close_and_check,
    machine_settings,
)


class Memory:
    """One allocation as the model knows it: where it is, and its bytes."""

    def __init__(self, start: int, capacity: int) -> None:
        self.start = start
        self.capacity = capacity
        self.content = bytearray(capacity)  # new memory is zero


POISON = 0xDB  # what zero="poison" fills returned blocks with


class Held:
    """A block out of the pool, with the pattern its holder wrote, and what
    keeps its memory from the pool: the holder (until it lets go), the
    ``Block`` object (while the model refers to it), its exports (``views``)
    and ``raw`` arrays (``np.ndarray(buffer=block)``: the address and a
    reference to the block, no export)."""

    def __init__(self, block: Block, memory: Memory | None, pattern: int) -> None:
        self.obj: Block | None = block
        self.memory = memory
        self.pattern = pattern
        self.capacity = block.capacity
        self.length = len(block)
        self.views: list = []
        self.raw: list = []
        self.exported = False  # at some point: the memory then waits for the object
        self.poisoned = False  # filled with POISON at its release

    def expected(self) -> bytes:
        """What a view or a raw array of the block reads."""
        return bytes([POISON if self.poisoned else self.pattern]) * self.length


class BlockCounts:
    """The counters a class row (or the oversize path) reports."""

    NAMES = ("hits", "misses", "puts", "created", "destroyed", "dropped", "expired")

    def __init__(self) -> None:
        self.c = dict.fromkeys(self.NAMES, 0)

    def bump(self, *names: str) -> None:
        for name in names:
            self.c[name] += 1

    @property
    def in_use(self) -> int:
        return self.c["hits"] + self.c["misses"] - self.c["puts"]


class BlockPoolMachine(LeaseMachine):
    """BlockPool: size classes, the shared idle byte cap, zero modes, exports
    (memoryview and numpy), with-blocks left while views are alive, raw
    arrays that keep the address without an export, the memory of an
    exported block coming back only with its ``Block`` object (and of one
    never exported, at once), abandoned blocks, close, and every refusal.
    With one shard the model knows every allocation by address and content,
    so a block handed to two holders, memory handed on while a view or a raw
    array can still reach it, or a holder seeing bytes it should not, fails
    at once."""

    KIND = "block"

    @initialize(
        layout=st.sampled_from(["explicit", "default"]),
        caps=st.tuples(*[st.none() | st.integers(0, 3)] * 3),
        max_block=st.sampled_from([100, 256]),
        max_idle_bytes=st.none() | st.integers(0, 3000),
        zero=st.sampled_from(["never", "release", "acquire", "poison"]),
        alignment=st.sampled_from([8, 64, 4096]),
        shards=st.integers(1, 2),
        idle_timeout=st.sampled_from([None, 3600.0]),
        track=st.booleans(),
    )
    def make_pool(
        self, layout, caps, max_block, max_idle_bytes, zero, alignment, shards, idle_timeout, track
    ):
        self.track = track
        budget = 64 << 20 if max_idle_bytes is None else max_idle_bytes
        options = {
            "max_idle_bytes": max_idle_bytes,
            "zero": zero,
            "alignment": alignment,
            "shards": shards,
            "idle_timeout": idle_timeout,
            "track": track,
        }
        if layout == "explicit":
            sizes = (64, 256, 1024)
            classes = [s if c is None else (s, c) for s, c in zip(sizes, caps, strict=True)]
            self.pool = BlockPool(classes=classes, **options)
            given = dict(zip(sizes, caps, strict=True))
        else:
            self.pool = BlockPool(max_block=max_block, **options)
            sizes = tuple(self.pool.classes)
            assert sizes[-1] == max_block
            given = {}
        self.sizes = sizes
        self.caps = {
            s: given[s] if given.get(s) is not None else min(max(budget // s // 4, 2), 1024)
            for s in sizes
        }
        self.budget = budget
        self.zero = zero
        self.alignment = alignment
        self.exact = shards == 1  # a FIFO per class: the model knows every block
        self.idle: dict[int, list[Memory | None]] = {s: [] for s in sizes}
        self.rows = {s: BlockCounts() for s in sizes}
        self.outside = BlockCounts()
        self.used: set[int] = set()
        self.oversize = 0
        self.held: list[Held] = []  # the holder has not let go
        self.released: list[Held] = []  # let go; the memory is not back yet
        self.gone: deque[Block] = deque(maxlen=3)  # released, memory back
        self.closed = False
        self.next_pattern = 0
        self.other = BlockPool(classes=[64], shards=1)
        self.foreign = self.other.get(10)

    # -- model helpers --

    def bytes_idle(self) -> int:
        return sum(size * len(idle) for size, idle in self.idle.items())

    def live_memory(self) -> list[Memory]:
        out = [h.memory for h in self.held + self.released]
        out += [m for idle in self.idle.values() for m in idle]
        return [m for m in out if m is not None]

    def give_back(self, h: Held) -> None:
        """`BlockPool::put` of the block `h` holds."""
        capacity = h.capacity
        if capacity not in self.rows:
            # Oversize: freed; counted as dropped unless the pool is closed
            # (as a returned block of a class after close).
            self.outside.bump("puts", "destroyed", *(() if self.closed else ("dropped",)))
            return
        self.used.add(capacity)
        row = self.rows[capacity]
        row.bump("puts")
        if self.closed:
            row.bump("destroyed")
            return
        if self.zero == "release" and h.memory is not None:
            h.memory.content[:] = bytes(capacity)
        if self.zero == "poison" and h.memory is not None:
            h.memory.content[:] = bytes([POISON]) * capacity
        if (
            len(self.idle[capacity]) < self.caps[capacity]
            and self.bytes_idle() + capacity <= self.budget
        ):
            self.idle[capacity].append(h.memory)
        else:
            row.bump("dropped", "destroyed")

    def let_go(self, h: Held) -> None:
        """The holder released `h` (a release, a put or a `with` exit)."""
        assert h.obj is not None
        assert h.obj.released
        self.held.remove(h)
        if not h.exported:
            # No one ever had the address: the memory is back at once.
            self.give_back(h)
            self.gone.append(h.obj)
            return
        if self.zero == "poison" and not h.views:
            h.poisoned = True
            if h.memory is not None:
                h.memory.content[:] = bytes([POISON]) * h.capacity
        self.released.append(h)

    def maybe_back(self, h: Held) -> None:
        """The memory of a released block comes back once nothing refers to
        its ``Block`` object."""
        if h in self.released and h.obj is None and not h.views and not h.raw:
            self.released.remove(h)
            self.give_back(h)

    def take(self, n: int, start: int | None):
        """The model's side of a `get(n)`: the class row, and the memory."""
        fits = [s for s in self.sizes if s >= n]
        if not fits:
            self.oversize += 1
            self.outside.bump("misses", "created")
            return n, False, Memory(start, n) if self.exact else None
        size = fits[0]
        self.used.add(size)
        row = self.rows[size]
        if self.idle[size]:
            row.bump("hits")
            memory = self.idle[size].pop(0)  # None unless the model is exact
            if memory is not None:
                if memory.start is None:
                    memory.start = start  # handed out before without an address
                assert start is None or start == memory.start, "not the oldest idle block"
            return size, True, memory
        row.bump("misses", "created")
        return size, False, Memory(start, size) if self.exact else None

    # -- rules --

    @rule(n=st.integers(0, 1100), zeroed=st.booleans())
    def get(self, n, zeroed):
        value, exc = call(lambda: self.pool.get(n, zeroed=zeroed))
        if self.closed:
            assert isinstance(exc, PoolClosed), exc
            return
        assert exc is None, exc
        block = value
        start = address(block)
        assert start % self.alignment == 0
        size, reused, memory = self.take(n, start)
        assert block.capacity == size
        assert len(block) == n
        assert not block.released
        if memory is not None:
            others = [m.start for m in self.live_memory() if m is not memory]
            assert start not in others, "memory handed out twice"
            if self.zero == "acquire" or zeroed:
                memory.content[:n] = bytes(n)
            assert bytes(block) == bytes(memory.content[:n]), "holder sees unexpected bytes"
        elif zeroed or not reused or self.zero in ("release", "acquire"):
            assert bytes(block) == bytes(n), "holder sees a previous holder's bytes"
        elif self.zero == "poison":
            assert bytes(block) == bytes([POISON]) * n, "a reused block is not poisoned"
        self.next_pattern = self.next_pattern % 255 + 1
        view = memoryview(block)
        view[:] = bytes([self.next_pattern]) * n
        view.release()
        if memory is not None:
            memory.content[:n] = bytes([self.next_pattern]) * n
        h = Held(block, memory, self.next_pattern)
        h.exported = True
        self.held.append(h)

    @rule(n=st.integers(0, 1100), how=st.sampled_from(["release", "pool.put", "with"]))
    def get_and_let_go_unexported(self, n, how):
        """A block never exported comes back at its release, not later."""
        value, exc = call(lambda: self.pool.get(n))
        if self.closed:
            assert isinstance(exc, PoolClosed), exc
            return
        assert exc is None, exc
        block = value
        _, _, memory = self.take(n, None)
        if memory is not None and self.zero == "acquire":
            memory.content[:n] = bytes(n)
        assert len(block) == n
        h = Held(block, memory, 0)
        self.held.append(h)
        if how == "release":
            block.release()
        elif how == "pool.put":
            self.pool.put(block)
        else:
            assert block.__exit__(None, None, None) is False
        self.let_go(h)

    @precondition(lambda self: self.held)
    @rule(data=st.data(), how=st.sampled_from(["release", "pool.put"]))
    def release(self, data, how):
        h = self.pick(data, self.held)
        give = Block.release if how == "release" else self.pool.put
        if h.views:
            with pytest.raises(BufferError, match="view"):
                give(h.obj)
            assert not h.obj.released
            return
        give(h.obj)
        self.let_go(h)

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def leave_with(self, data):
        h = self.pick(data, self.held)
        assert h.obj.__exit__(None, None, None) is False
        self.let_go(h)

    @precondition(lambda self: self.held)
    @rule(data=st.data(), numpy=st.booleans())
    def export(self, data, numpy):
        h = self.pick(data, self.held)
        view = np.frombuffer(h.obj, np.uint8) if numpy else memoryview(h.obj)
        assert bytes(view) == h.expected()
        h.views.append(view)
        h.exported = True

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def raw_view(self, data):
        """What numpy's ``ndarray(buffer=...)`` does: take the address, end
        the export at once, keep a reference."""
        h = self.pick(data, self.held)
        raw = np.ndarray((h.length,), np.uint8, buffer=h.obj)
        assert raw.base is h.obj
        assert bytes(raw) == h.expected()
        h.raw.append(raw)
        h.exported = True

    @precondition(lambda self: any(h.raw for h in self.held + self.released))
    @rule(data=st.data())
    def drop_raw(self, data):
        h = self.pick(data, [h for h in self.held + self.released if h.raw])
        assert bytes(h.raw.pop()) == h.expected()
        self.maybe_back(h)

    @precondition(lambda self: any(not h.views and not h.raw for h in self.held))
    @rule(data=st.data())
    def abandon(self, data):
        """A block dropped without release goes back, with a ResourceWarning."""
        h = self.pick(data, [h for h in self.held if not h.views and not h.raw])
        self.held.remove(h)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            h.obj = None  # the last reference: collected at once
        assert [w.category for w in caught] == [ResourceWarning]
        assert f"{h.capacity} bytes" in str(caught[0].message)
        self.give_back(h)

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def refusals_of_a_held_block(self, data):
        """Changes nothing: put into another pool."""
        h = self.pick(data, self.held)
        with pytest.raises(ValueError, match="another BlockPool"):
            self.other.put(h.obj)
        with pytest.raises(ValueError, match="another BlockPool"):
            self.pool.put(self.foreign)
        assert not h.obj.released

    @precondition(lambda self: self.released_objects())
    @rule(
        data=st.data(), what=st.sampled_from(["release", "put", "len", "export", "enter", "exit"])
    )
    def use_after_release(self, data, what):
        """Refused (or, for leaving a with-block again, a no-op); changes nothing."""
        block = self.pick(data, self.released_objects())
        assert block.released
        if what == "release":
            with pytest.raises(ValueError, match="released already"):
                block.release()
        elif what == "put":
            with pytest.raises(ValueError, match="released already"):
                self.pool.put(block)
        elif what == "len":
            with pytest.raises(ValueError, match="released"):
                len(block)
        elif what == "export":
            with pytest.raises(BufferError, match="released"):
                memoryview(block)
        elif what == "enter":
            with pytest.raises(ValueError, match="released"), block:
                pass
        else:
            assert block.__exit__(None, None, None) is False

    @rule(keep=st.integers(0, 3000))
    def trim(self, keep):
        freed = 0
        for size in reversed(self.sizes):
            idle = self.bytes_idle()
            if idle <= keep:
                break
            excess = -(-(idle - keep) // size)
            kept = max(0, len(self.idle[size]) - excess)
            gone = len(self.idle[size]) - kept
            freed += gone * size
            for _ in range(gone):
                self.rows[size].bump("destroyed")
            del self.idle[size][:gone]  # oldest first
        assert self.pool.trim(keep) == freed

    @rule()
    def clear(self):
        freed = self.bytes_idle()
        for size, idle in self.idle.items():
            for _ in idle:
                self.rows[size].bump("destroyed")
            idle.clear()
        assert self.pool.clear() == freed

    @rule()
    def close(self):
        close_and_check(self.pool, self.track, len(self.held))
        for size, idle in self.idle.items():
            for _ in idle:
                self.rows[size].bump("destroyed")
            idle.clear()
        self.closed = True

    @invariant()
    def stats_match_the_model(self):
        s = self.pool.stats()
        d = s.as_dict()
        for name in BlockCounts.NAMES:
            total = self.outside.c[name] + sum(r.c[name] for r in self.rows.values())
            assert getattr(s, name) == total == d[name], name
        assert s.oversize == self.oversize == d["oversize"]
        assert s.bytes_idle == self.bytes_idle() == d["bytes_idle"] <= self.budget
        out = self.held + self.released
        assert s.bytes_in_use == sum(h.capacity for h in out) == d["bytes_in_use"]
        assert s.max_idle_bytes == self.budget == self.pool.max_idle_bytes
        assert len(self.pool) == sum(len(i) for i in self.idle.values())
        gets = s.hits + s.misses
        assert s.hit_rate == d["hit_rate"] == (s.hits / gets if gets else 0.0)
        assert [r.size for r in s.classes] == sorted(self.used)
        assert [r["size"] for r in d["classes"]] == sorted(self.used)
        for r, rd in zip(s.classes, d["classes"], strict=True):
            row = self.rows[r.size]
            for name in ("hits", "misses", "puts", "dropped", "expired"):
                assert getattr(r, name) == row.c[name] == rd[name], (r.size, name)
            assert r.in_use == row.in_use == rd["in_use"]
            assert r.idle == len(self.idle[r.size]) == rd["idle"]
            assert r.max_idle == self.caps[r.size] == rd["max_idle"]
        assert s.in_use == len(out) == d["in_use"]
        assert s.idle == len(self.pool) == d["idle"]
        assert s.created == s.destroyed + s.idle + s.in_use
        assert self.pool.closed == self.closed
        check_outstanding(self.pool, self.track, len(self.held))

    @invariant()
    def every_holder_sees_only_its_own_bytes(self):
        for h in self.held:
            assert bytes(h.obj) == h.expected()
        for h in self.held + self.released:
            for view in h.views:
                assert bytes(view) == h.expected()
            for raw in h.raw:
                assert bytes(raw) == h.expected(), "a raw array reads reused memory"


BlockPoolMachine.TestCase.settings = machine_settings(examples=200, steps=40)
test_block_pool_model = BlockPoolMachine.TestCase
