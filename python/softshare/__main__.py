"""``python -m softshare demo|inspect ...`` (also the ``softshare`` console script)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``softshare <command>``: ``demo`` or ``inspect`` (``--version``: the version).

    Returns the exit status: 0, 2 for a usage error (argparse exits with 2 for
    a bad ``demo`` argument), 130 for an interrupted run.
    """
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--version"]:
        from . import __version__

        print(f"softshare {__version__}")
        return 0
    if not args or args[0] in {"-h", "--help"}:
        usage = (
            "usage: softshare demo [--quick] [--seeds K] [--data PATH] [--models NAME ...]\n"
            "                      [--device DEV] [--out DIR]   (demo --help for all options)\n"
            "       softshare inspect FILE [FILE ...]   (a compressed model file's layers)\n"
            "       softshare --version"
        )
        print(usage, file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    if args[0] == "inspect":
        from .demo._inspect import main as inspect_main

        return inspect_main(args[1:])
    if args[0] != "demo":
        print(
            f"softshare: unknown command {args[0]!r} (the commands are 'demo' and 'inspect')",
            file=sys.stderr,
        )
        return 2
    try:
        from .demo import main as demo_main

        return demo_main(args[1:])
    except KeyboardInterrupt:  # before the demo's own handler is in place
        print("\nsoftshare: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
