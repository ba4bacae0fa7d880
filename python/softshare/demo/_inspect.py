"""The ``softshare inspect FILE`` command line: a compressed model file's per-layer table."""

from __future__ import annotations

import argparse
import os
import sys

from .. import compress


def main(argv: list[str] | None = None) -> int:
    """Print what each compressed model file in ``argv`` holds, layer by layer.

    Parameters
    ----------
    argv : list of str, optional
        The files (``--help`` says more).

    Returns
    -------
    int
        0; a file that cannot be read, is not such a file or is corrupt ends
        the command with a one-line ``error:`` and status 2.
    """
    parser = argparse.ArgumentParser(
        prog="softshare inspect",
        description="Print the per-layer table of compressed model files (softshare demo's "
        "*.sws, softshare.compress.write_file, softshare.torch.save_compressed).",
    )
    parser.add_argument("files", nargs="+", metavar="FILE")
    args = parser.parse_args(argv)
    try:
        _print_files(parser, args.files)
    except BrokenPipeError:  # the reader left (`softshare inspect FILE | head`): no traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's final flush must not fail again
        return 0
    return 0


def _print_files(parser: argparse.ArgumentParser, files: list[str]) -> None:
    """Each file's summary line and table, or ``parser.error`` for one that cannot be read."""
    for i, path in enumerate(files):
        try:
            contents = compress.inspect_file(path)
        except OSError as e:
            parser.error(f"{path}: {e.strerror or e}")
        except ValueError as e:
            parser.error(str(e))
        book, mix = contents.codebook, contents.mixture
        print(
            f"{'' if i == 0 else chr(10)}{path}: {contents.n_weights} weights in "
            f"{len(contents.indices)} layers, a codebook of {book.size} {book.dtype} values"
            + (f", a mixture of {mix.n_components} components" if mix is not None else "")
            + f"; {contents.file_bytes} bytes, {contents.ratio:.1f}x float32\n"
        )
        print(contents.to_markdown(), flush=True)
