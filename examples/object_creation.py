"""A costly object with per-use state, reused through an ObjectPool, against the alternatives.

    python examples/object_creation.py                          # 2,000 tasks, pooled
    python examples/object_creation.py --variant threadlocal    # one Tagger per thread
    python examples/object_creation.py --variant locked-shared  # one Tagger and a lock
    python examples/object_creation.py --no-pool                # a new Tagger per task
    python examples/object_creation.py --quick                  # a smoke test

Each task counts the words of each category in a document, fed to a
``Tagger`` in chunks as it would arrive from a file or a socket. A
``Tagger`` costs something to build (a 5,000-word vocabulary table and a
category array, like the tokenizers, parsers and decoders people pool) and
keeps state while it works: a scratch array of word ids and the running
counts, cleared by ``reset()`` (the Resetter protocol). So one instance
cannot serve two tasks at once: a shared one needs a lock.

Tasks run on a ``ThreadPoolExecutor`` of 4 threads; documents have 32 to
8,192 words (evenly spread on a log scale). The variants differ only in
where a task gets its ``Tagger``:

- ``unpooled``: ``Tagger()`` per task;
- ``locked-shared``: one ``Tagger`` for the program, behind a ``threading.Lock``;
- ``threadlocal``: one per worker thread, through ``threading.local``;
- ``pooled``: an ``ObjectPool(Tagger)``, which resets it on return.

How much reuse gains is set by one ratio: what a ``Tagger`` costs to build
against what a task costs with a ready one. The run prints both.
"""

from __future__ import annotations

import random
import re
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import numpy as np
from _measure import Measurement, ScenarioResult, parse_args, report, run_tasks

from shardpool import ObjectPool

VOCABULARY = 5_000
CATEGORIES = 16
WORKERS = 4
MIN_WORDS, MAX_WORDS = 32, 8_192  # a short message to a long article
CHUNK = 2_000  # characters per feed
DOCUMENTS = 64  # distinct documents, cycled: their expected results are computed once
VARIANTS = ["unpooled", "locked-shared", "threadlocal", "pooled"]


def make_words(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choices(letters, k=rng.randint(3, 10))) for _ in range(n)]


WORDS = make_words(VOCABULARY, seed=1)
_rng = random.Random(3)
WORD_CATEGORIES = [_rng.randrange(CATEGORIES) for _ in WORDS]


class Tagger:
    """Counts the words of each category in a text fed in chunks.

    Costly to build (the vocabulary table), cheap to reuse, and stateful
    between ``feed()`` calls: ``reset()`` makes it as new (Resetter protocol).
    """

    WORD = re.compile(r"[a-z]+")

    def __init__(self) -> None:
        # The costly part: a table built from the word list (stand-in for loading a model).
        self.index = {word: i for i, word in enumerate(WORDS)}
        # Category of each word id; the last entry is for words not in the vocabulary.
        self.category = np.array([*WORD_CATEGORIES, CATEGORIES], dtype=np.int32)
        # Per-use state: a scratch array for a chunk's word ids, and the counts so far.
        self.ids = np.empty(CHUNK, dtype=np.int32)
        self.counts = np.zeros(CATEGORIES + 1, dtype=np.int64)
        self.carry = ""  # a word cut at the end of the last chunk

    def feed(self, chunk: str) -> None:
        """Count the complete words of ``chunk`` (a word may continue in the next chunk)."""
        text = self.carry + chunk
        cut = text.rfind(" ") + 1
        self.carry = text[cut:]
        self._count(text[:cut])

    def result(self) -> list[int]:
        """The counts per category (the last: unknown words) of everything fed."""
        if self.carry:
            self._count(self.carry)
            self.carry = ""
        return [int(c) for c in self.counts]

    def reset(self) -> None:
        self.counts[:] = 0
        self.carry = ""

    def _count(self, text: str) -> None:
        words = self.WORD.findall(text)
        n = len(words)
        if n > len(self.ids):
            self.ids = np.empty(n, dtype=np.int32)
        ids = self.ids[:n]
        unknown = len(WORDS)
        ids[:] = [self.index.get(word, unknown) for word in words]
        self.counts += np.bincount(self.category[ids], minlength=CATEGORIES + 1)


def make_documents(seed: int = 5) -> list[str]:
    """DOCUMENTS texts, one in five words unknown, the same in every run."""
    rng = random.Random(seed)
    unknown = make_words(1_000, seed=2)
    docs: list[str] = []
    for _ in range(DOCUMENTS):
        n = int(MIN_WORDS * (MAX_WORDS / MIN_WORDS) ** rng.random())
        docs.append(
            " ".join(rng.choice(unknown if rng.random() < 0.2 else WORDS) for _ in range(n))
        )
    return docs


def chunks(text: str) -> Iterator[str]:
    return (text[i : i + CHUNK] for i in range(0, len(text), CHUNK))


def tag(text: str, tagger: Tagger) -> list[int]:
    for chunk in chunks(text):
        tagger.feed(chunk)
    return tagger.result()


def taggers(variant: str) -> tuple[Callable[[], AbstractContextManager[Tagger]], Any]:
    """Where a task gets its Tagger, and the pool if any: the only difference between variants."""
    if variant == "unpooled":
        return lambda: nullcontext(Tagger()), None
    if variant == "locked-shared":
        shared, lock = Tagger(), threading.Lock()

        @contextmanager
        def locked() -> Generator[Tagger, None, None]:
            with lock:
                try:
                    yield shared
                finally:
                    shared.reset()

        return locked, None
    if variant == "threadlocal":
        local = threading.local()

        @contextmanager
        def per_thread() -> Generator[Tagger, None, None]:
            tagger: Tagger | None = getattr(local, "tagger", None)
            if tagger is None:
                tagger = local.tagger = Tagger()
            try:
                yield tagger
            finally:
                tagger.reset()

        return per_thread, None
    pool = ObjectPool(Tagger, name="taggers")  # reset() on every return
    return pool.borrow, pool


def costs(docs: list[str]) -> dict[str, float]:
    """Microseconds to build a Tagger and to run a task with a ready one (mean document)."""
    t0 = time.perf_counter()
    for _ in range(50):
        Tagger()
    build = (time.perf_counter() - t0) / 50
    tagger = Tagger()
    t0 = time.perf_counter()
    for text in docs:
        tag(text, tagger)
        tagger.reset()
    return {"build_us": build * 1e6, "task_us": (time.perf_counter() - t0) / len(docs) * 1e6}


def run(variant: str, quick: bool) -> ScenarioResult:
    """Tag ``tasks`` documents on a thread pool; return the measurements."""
    tasks = 300 if quick else 2_000
    measure = Measurement()
    docs = make_documents()
    expected = [tag(text, Tagger()) for text in docs]
    tagger, pool = taggers(variant)

    def task(i: int) -> int:
        doc = i % DOCUMENTS
        with tagger() as t:
            counts = tag(docs[doc], t)
        if counts != expected[doc]:
            raise AssertionError(f"task {i} counted {counts}, not {expected[doc]}")
        return (i + 1) * sum(k * c for k, c in enumerate(counts, 1))  # the order shows in the sum

    with measure:
        checksum, latencies = run_tasks(tasks, WORKERS, task)
    return measure.result(
        "objects",
        variant,
        "tasks",
        tasks,
        latencies,
        verified=tasks,  # every task raises unless its counts are the expected ones
        checksum=f"{checksum:x}",
        details={
            "latency_of": "one task",
            **costs(docs),
            "pools": {"taggers": pool.stats().as_dict()} if pool else {},
        },
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, VARIANTS, argv)
    result = run(args.variant, args.quick)
    status = report(result, args.json)
    d = result.details
    print(
        f"building a Tagger: {d['build_us']:.0f} us; a task with one ready: {d['task_us']:.0f} us"
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
