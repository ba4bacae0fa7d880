"""The ``softshare demo`` command line: run the recipe, print the tables, write results.json."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import __doc__ as _DEMO_DOC
from .data import load_data
from .recipe import Config, RunResult, run_network

if TYPE_CHECKING:
    from collections.abc import Callable


def _table(rows: list[RunResult]) -> str:
    """The summary table: one row per network and seed."""
    lines = [
        (
            "| network | seed | error before % | error after % | Δ pp | non-zero % | components "
            "| file bytes | ratio (file) | entropy bound |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.seed} | {100 * r.error_before:.2f} | {100 * r.error_after:.2f} | "
            f"{100 * (r.error_after - r.error_before):+.2f} | {100 * r.nonzero_fraction:.2f} | "
            f"{r.n_components} | {r.file_bytes} | {r.compression_ratio:.1f}x | "
            f"{r.compression_ratio_entropy:.1f}x |"
        )
    return "\n".join(lines)


def _at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer of at least ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            msg = f"{text!r} is not an integer"
            raise argparse.ArgumentTypeError(msg) from None
        if value < low:
            msg = f"must be at least {low}, got {value}"
            raise argparse.ArgumentTypeError(msg)
        return value

    return parse


def _positive_float(text: str) -> float:
    """An argparse ``type``: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        msg = f"must be a finite number above 0, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _existing(text: str) -> str:
    """An argparse ``type``: a path that exists (its contents are checked when read)."""
    if not Path(text).exists():
        msg = f"{text}: no such file or folder"
        raise argparse.ArgumentTypeError(msg)
    return text


def _out_folder(text: str) -> Path:
    """An argparse ``type``: a folder, or a path where one can be made."""
    path = Path(text)
    above = next((a for a in (path, *path.parents) if a.exists()), Path("."))
    if not above.is_dir():
        msg = f"{above} is a file, not a folder"
        raise argparse.ArgumentTypeError(msg)
    if not os.access(above, os.W_OK | os.X_OK):
        msg = f"{above} is not writable"
        raise argparse.ArgumentTypeError(msg)
    return path


def _parser() -> argparse.ArgumentParser:
    """The arguments, each checked as it is parsed (a clean ``error:``, exit status 2)."""
    description = (_DEMO_DOC or "").splitlines()[0]
    parser = argparse.ArgumentParser(prog="softshare demo", description=description)
    parser.add_argument(
        "--out",
        type=_out_folder,
        default="softshare-demo",
        metavar="DIR",
        help="folder for the compressed model files (<model>_seed<k>.sws: see softshare "
        "inspect), figures and results.json (made if missing). A run "
        "removes results.json first and writes it last: a folder without one holds an "
        "interrupted or failed run",
    )
    parser.add_argument("--quick", action="store_true", help="few epochs (about 30 s, for tests)")
    parser.add_argument(
        "--seeds",
        type=_at_least(1),
        default=1,
        metavar="K",
        help="repeat the recipe over K >= 1 seeds",
    )
    parser.add_argument(
        "--data",
        type=_existing,
        default=None,
        metavar="PATH",
        help="MNIST as mnist.npz or a folder of IDX files",
    )
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"], choices=["mlp", "cnn"])
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--threads",
        type=_at_least(1),
        default=None,
        metavar="N",
        help="torch threads (default: all cores)",
    )
    parser.add_argument(
        "--tau", type=_positive_float, default=None, help="strength of the prior (per example), > 0"
    )
    parser.add_argument(
        "--retrain-epochs", type=_at_least(1), default=None, metavar="N", help="(>= 1)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``softshare demo`` with the arguments ``argv`` (default: ``sys.argv[1:]``).

    Every argument is checked before any data is read, and the data before any
    training: a bad one ends the run with a one-line ``error:`` and status 2.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after ``demo`` (``--help`` lists them).

    Returns
    -------
    int
        The exit status: 0; 2 for a bad argument or data, or without PyTorch;
        130 when interrupted (Ctrl-C).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if len(set(args.models)) != len(args.models):
        parser.error(f"argument --models: a model is named twice in {args.models}")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").unlink(missing_ok=True)
    except OSError as e:
        parser.error(f"argument --out: {e}")
    try:
        return _run(parser, args)
    except KeyboardInterrupt:
        print(f"\nsoftshare demo: interrupted; {args.out} holds no results.json", file=sys.stderr)
        return 130


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """The run itself, its arguments checked."""
    try:
        import torch
    except ImportError:
        print('softshare demo needs PyTorch: pip install "softshare[demo]"', file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    cfg = (
        Config(pretrain_epochs=15, retrain_epochs=40, finetune_epochs=5) if args.quick else Config()
    )
    if args.tau is not None:
        cfg.tau = args.tau
    if args.retrain_epochs is not None:
        cfg.retrain_epochs = args.retrain_epochs
    rows = []
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        try:
            data = load_data(args.data, seed)
        except (ImportError, OSError, ValueError) as e:  # scikit-learn missing, or bad data
            parser.error(str(e))
        for kind in args.models:
            rows.append(
                run_network(
                    kind, data, cfg, seed, args.out, progress=not args.no_progress, plots=True
                )
            )
    print(
        f"\nSoft weight-sharing on {data.name} ({len(data.y_train)} train / {len(data.y_val)} validation / "
        f"{len(data.y_test)} test), {time.perf_counter() - t0:.0f} s\n"
    )
    print(_table(rows))
    summary = []
    for kind in args.models:
        mine = [r for r in rows if r.name == kind]
        mean = {
            k: float(np.mean([getattr(r, k) for r in mine]))
            for k in (
                "error_before",
                "error_after",
                "nonzero_fraction",
                "n_components",
                "compression_ratio",
                "compression_ratio_entropy",
            )
        }
        summary.append({"name": kind, **mean})
        if len(mine) > 1:
            print(
                f"mean {kind}: error {100 * mean['error_before']:.2f}% -> {100 * mean['error_after']:.2f}% "
                f"({100 * (mean['error_after'] - mean['error_before']):+.2f} pp), {mean['compression_ratio']:.1f}x"
            )
    for r in rows:
        print(f"\n{r.name} seed {r.seed}: {r.merge}\n{r.table}")
    results = {
        "data": data.name,
        "models": [{k: v for k, v in asdict(r).items() if k != "table"} for r in rows],
        "mean": summary,
        "config": asdict(cfg),
    }
    partial = args.out / "results.json.partial"
    partial.write_text(json.dumps(results, indent=2))
    os.replace(partial, args.out / "results.json")  # complete or absent, never half-written
    print(f"\ncompressed model files (*.sws), figures and results.json in {args.out}")
    return 0
