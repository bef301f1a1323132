"""The types inferred for the asyncio API: ``aget()`` and ``aborrow()``.

Like check_types.py: checked by mypy and pyright, and run as a script by
tests/project/test_typing_files.py.
"""

from __future__ import annotations

import asyncio
from typing import assert_type

from shardpool import AsyncBorrow, ObjectPool, TieredPool


class Parser:
    def __init__(self) -> None:
        self.tokens: list[str] = []


async def object_pool() -> None:
    pool = ObjectPool(Parser, max_size=2)
    parser = await pool.aget()
    assert_type(parser, Parser)
    second = await pool.aget(timeout=0.5)
    assert_type(second, Parser)
    pool.put(second)
    assert_type(pool.aborrow(), AsyncBorrow[Parser])
    async with pool.aborrow(5) as borrowed:
        assert_type(borrowed, Parser)
    async with pool.aborrow(timeout=1.0) as borrowed:
        assert_type(borrowed, Parser)
        borrowed.tokens.append("x")
    pool.put(parser)
    pool.close()


async def tiered_pool() -> None:
    pool = TieredPool(bytearray, [(64, 8), (1024, 8)])
    frame = await pool.aget(100)
    assert_type(frame, bytearray)
    pool.put(frame)
    assert_type(pool.aborrow(100), AsyncBorrow[bytearray])
    async with pool.aborrow(100, timeout=1.0) as borrowed:
        assert_type(borrowed, bytearray)
    pool.close()


async def main() -> None:
    await object_pool()
    await tiered_pool()


if __name__ == "__main__":
    asyncio.run(main())
