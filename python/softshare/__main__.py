"""``python -m softshare demo ...`` (also the ``softshare`` console script)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``softshare <command>``; the one command is ``demo``."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help"}:
        print("usage: softshare demo [--quick] [--seeds K] [--data PATH] [--out DIR]")
        return 0 if args else 2
    if args[0] != "demo":
        print(
            f"softshare: unknown command {args[0]!r} (the one command is 'demo')", file=sys.stderr
        )
        return 2
    from .demo import main as demo_main

    return demo_main(args[1:])


if __name__ == "__main__":
    sys.exit(main())
