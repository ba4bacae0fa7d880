"""The ``softshare demo`` command line: run the recipe, print the tables, write results.json."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from . import __doc__ as _DEMO_DOC
from .data import load_data
from .recipe import Config, RunResult, run_network


def _table(rows: list[RunResult]) -> str:
    """The summary table: one row per network and seed."""
    lines = [
        "| network | seed | error before % | error after % | Δ pp | non-zero % | components | ratio (Huffman) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.seed} | {100 * r.error_before:.2f} | {100 * r.error_after:.2f} | "
            f"{100 * (r.error_after - r.error_before):+.2f} | {100 * r.nonzero_fraction:.2f} | "
            f"{r.n_components} | {r.compression_ratio:.1f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run ``softshare demo`` with the arguments ``argv`` (default: ``sys.argv[1:]``).

    Parameters
    ----------
    argv : list of str, optional
        The arguments after ``demo`` (``--help`` lists them).

    Returns
    -------
    int
        The exit status: 0, or 2 without PyTorch.
    """
    description = (_DEMO_DOC or "").splitlines()[0]
    parser = argparse.ArgumentParser(prog="softshare demo", description=description)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("softshare-demo"),
        help="folder for figures and results.json",
    )
    parser.add_argument("--quick", action="store_true", help="few epochs (about 30 s, for tests)")
    parser.add_argument("--seeds", type=int, default=1, help="repeat the recipe over K seeds")
    parser.add_argument("--data", default=None, help="MNIST as mnist.npz or a folder of IDX files")
    parser.add_argument("--models", nargs="*", default=["mlp", "cnn"], choices=["mlp", "cnn"])
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: all cores)"
    )
    parser.add_argument(
        "--tau", type=float, default=None, help="strength of the prior (per example)"
    )
    parser.add_argument("--retrain-epochs", type=int, default=None)
    args = parser.parse_args(argv)
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
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        data = load_data(args.data, seed)
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
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\nfigures and results.json in {args.out}")
    return 0
