"""``python -m shardpool``: command-line tools.

python -m shardpool bench [--quick] [--json PATH] [--plot PATH]
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help"}:
        print(__doc__.strip())
        return 0 if args else 2
    if args[0] == "bench":
        from shardpool.bench import main as bench

        return bench(args[1:])
    print(f"unknown command {args[0]!r}\n\n{__doc__.strip()}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
