"""Costly objects reused through ObjectPool and TieredPool, against building them per task.

    python examples/object_creation.py             # 6,000 tasks, pooled
    python examples/object_creation.py --no-pool   # the same program without pools
    python examples/object_creation.py --quick     # a few hundred tasks

Each task tags a document: it splits the text into words, looks every word
up in a vocabulary and counts the words of each category. It needs two
things that cost something to make:

- a ``Tagger``: a 5,000-word vocabulary table and a category array, built
  on construction (a few hundred microseconds, like the tokenizers, parsers
  and template engines people pool), from an ``ObjectPool``;
- a scratch ``numpy`` array for the document's word ids, from a
  ``TieredPool`` with tiers of 256, 2,048 and 8,192 ids.

Tasks run on a ``ThreadPoolExecutor`` of 4 threads; documents have 32 to
8,192 words (evenly spread on a log scale). Without pools (``--no-pool``)
each task builds a ``Tagger`` and allocates ``numpy.empty(n)``.

How much pooling gains here is set by one ratio: what a ``Tagger`` costs to
build against what a task costs to run. The run prints both.
"""

from __future__ import annotations

import random
import re
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import numpy.typing as npt
from _measure import Measurement, ScenarioResult, parse_args, report, run_tasks

from shardpool import ObjectPool, TieredPool

VOCABULARY = 5_000
CATEGORIES = 16
WORKERS = 4
MIN_WORDS, MAX_WORDS = 32, 8_192  # a short message to a long article
DOCUMENTS = 64  # distinct documents, cycled: their expected results are computed once
TIERS = [256, 2_048, 8_192]

Ids = npt.NDArray[np.int32]


def make_words(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choices(letters, k=rng.randint(3, 10))) for _ in range(n)]


WORDS = make_words(VOCABULARY, seed=1)
_rng = random.Random(3)
WORD_CATEGORIES = [_rng.randrange(CATEGORIES) for _ in WORDS]


class Tagger:
    """Maps words to categories: costly to build, immutable once built (so no reset)."""

    WORD = re.compile(r"[a-z]+")

    def __init__(self) -> None:
        # The costly part: a table built from the word list (stand-in for loading a model).
        self.index = {word: i for i, word in enumerate(WORDS)}
        # Category of each word id; the last entry is for words not in the vocabulary.
        self.category = np.array([*WORD_CATEGORIES, CATEGORIES], dtype=np.int32)

    def tag(self, text: str, ids: Ids) -> list[int]:
        """Count the words of each category in ``text``, with ``ids`` as scratch space."""
        words = self.WORD.findall(text)
        n = len(words)
        unknown = len(WORDS)
        ids[:n] = [self.index.get(word, unknown) for word in words]
        counts = np.bincount(self.category[ids[:n]], minlength=CATEGORIES + 1)
        return [int(c) for c in counts]


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


class Resources:
    """Where a task's tagger and scratch array come from: the only pooled/unpooled difference."""

    tagger: Callable[[], AbstractContextManager[Tagger]]
    scratch: Callable[[int], AbstractContextManager[Ids]]

    def __init__(self, pooled: bool) -> None:
        self.pools: dict[str, Any] = {}
        if pooled:
            taggers = ObjectPool(Tagger)
            arrays: TieredPool[Ids] = TieredPool(
                lambda size: np.empty(size, dtype=np.int32),
                [(size, 2 * WORKERS) for size in TIERS],
                reset=False,  # every task overwrites the part it uses
            )
            self.pools = {"taggers": taggers, "arrays": arrays}
            self.tagger, self.scratch = taggers.borrow, arrays.borrow
        else:
            self.tagger = lambda: nullcontext(Tagger())
            self.scratch = lambda n: nullcontext(np.empty(n, dtype=np.int32))


def tag(text: str, words: int, res: Resources) -> list[int]:
    """Tag one document with a tagger and scratch space from ``res``."""
    with res.tagger() as tagger, res.scratch(words) as ids:
        return tagger.tag(text, ids)


def costs(docs: list[str], sizes: list[int]) -> dict[str, float]:
    """Microseconds to build a Tagger and to run a task with a ready one (mean document)."""
    t0 = time.perf_counter()
    for _ in range(50):
        Tagger()
    build = (time.perf_counter() - t0) / 50
    tagger = Tagger()
    t0 = time.perf_counter()
    for text, n in zip(docs, sizes, strict=True):
        tagger.tag(text, np.empty(n, dtype=np.int32))
    return {"build_us": build * 1e6, "task_us": (time.perf_counter() - t0) / len(docs) * 1e6}


def run(pooled: bool, quick: bool, traced: bool = False) -> ScenarioResult:
    """Tag ``tasks`` documents on a thread pool; return the measurements."""
    tasks = 300 if quick else 6_000
    measure = Measurement(traced)
    docs = make_documents()
    sizes = [len(Tagger.WORD.findall(text)) for text in docs]
    reference = Tagger()
    expected = [
        reference.tag(text, np.empty(n, dtype=np.int32))
        for text, n in zip(docs, sizes, strict=True)
    ]
    res = Resources(pooled)

    def task(i: int) -> int:
        doc = i % DOCUMENTS
        counts = tag(docs[doc], sizes[doc], res)
        if counts != expected[doc]:
            raise AssertionError(f"task {i} counted {counts}, not {expected[doc]}")
        return (i + 1) * sum(k * c for k, c in enumerate(counts, 1))  # the order shows in the sum

    with measure:
        checksum, latencies = run_tasks(tasks, WORKERS, task)
    return measure.result(
        "objects",
        "pooled" if pooled else "unpooled",
        "tasks",
        tasks,
        latencies,
        verified=tasks,  # every task raises unless its counts are the expected ones
        checksum=f"{checksum:x}",
        details={
            "latency_of": "one task",
            **costs(docs, sizes),
            "pools": {name: pool.stats().as_dict() for name, pool in res.pools.items()},
        },
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv)
    result = run(not args.no_pool, args.quick, args.tracemalloc)
    status = report(result, args.json)
    d = result.details
    print(
        f"building a Tagger: {d['build_us']:.0f} us; a task with one ready: {d['task_us']:.0f} us"
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
