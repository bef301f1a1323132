"""``python -m shardpool``: command-line tools.

python -m shardpool bench [--quick] [--json PATH] [--plot PATH]
python -m shardpool bench --instructions [--case KEY ...] [--json PATH] [--plot PATH]
"""

from __future__ import annotations

import sys

USAGE = (__doc__ or "").strip()  # __doc__ is None under python -OO


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help"}:
        print(USAGE)
        return 0 if args else 2
    if args[0] == "bench":
        from shardpool.bench import main as bench

        return bench(args[1:])
    print(f"unknown command {args[0]!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
