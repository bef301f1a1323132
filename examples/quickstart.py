"""A tour of ObjectPool: reuse, reset, bounds, threads and stats.

python examples/quickstart.py
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from shardpool import ObjectPool, PoolTimeout


class Parser:
    """Expensive to build, cheap to reset: what a pool is for."""

    built = 0

    def __init__(self) -> None:
        Parser.built += 1
        self.table = {i: str(i) for i in range(10_000)}  # the costly part
        self.tokens: list[str] = []

    def parse(self, text: str) -> int:
        self.tokens.extend(text.split())
        return len(self.tokens)

    def reset(self) -> None:
        """Called by the pool when the parser comes back (the Resetter protocol)."""
        self.tokens.clear()


def main() -> None:
    # At most 4 parsers ever exist; a 5th caller waits for one to come back.
    with ObjectPool(Parser, max_size=4) as parsers:
        # 1. borrow() gets a parser and puts it back (reset) when the block ends.
        with parsers.borrow() as parser:
            print("tokens:", parser.parse("a pool hands out objects"))

        # 2. Many threads share the pool; the GIL is released while they wait.
        def work(i: int) -> int:
            with parsers.borrow(timeout=5) as p:
                return p.parse(f"request {i} from thread {threading.get_ident()}")

        with ThreadPoolExecutor(max_workers=16) as executor:
            results = list(executor.map(work, range(1_000)))
        assert all(n == 5 for n in results), "every parser came back clean"

        # 3. A full pool fails fast when asked to.
        held = parsers.get_many(4)
        try:
            parsers.get(timeout=0)
        except PoolTimeout as e:
            print("full:", e)
        parsers.put_many(held)

        s = parsers.stats()
        print(f"1001 borrows served by {Parser.built} parsers, hit rate {s.hit_rate:.1%}")
        print(s)


if __name__ == "__main__":
    main()
