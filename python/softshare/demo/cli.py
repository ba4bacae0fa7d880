"""The ``softshare demo`` command line: run the recipe, print the tables, write results.json."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._loop import TrainingDiverged
from .config import Config
from .data import load_data
from .models import DIGITS_MODELS, MODEL_SIDES, PAPER_MODELS, check_fits
from .plots import FIGURES
from .recipe import run_network
from .report import mean_lines, means, sources, table, write_results
from .schedule import MNIST_TRAIN, schedule_for

if TYPE_CHECKING:
    from collections.abc import Callable

#: ``--help``'s first line: the first line of the package's docstring (a test checks they agree;
#: read here, not imported from the package, which imports this module).
DESCRIPTION = (
    "``softshare demo``: the compression recipe end to end on data that ships with a package."
)


def _at_least(low: int, high: int, why: str = "") -> Callable[[str], int]:
    """An argparse ``type``: an integer in ``[low, high]`` (``why`` says where ``high`` comes from)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            msg = f"{text!r} is not an integer"
            raise argparse.ArgumentTypeError(msg) from None
        if value < low:
            msg = f"must be at least {low}, got {value}"
            raise argparse.ArgumentTypeError(msg)
        if value > high:
            msg = f"must be at most {high:,}{why}, got {text}"
            raise argparse.ArgumentTypeError(msg)
        return value

    return parse


CORES = os.cpu_count() or 1
MAX_THREADS = 4 * CORES  # more threads than that only contend, and torch cannot start millions


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


def _budget(text: str) -> float | str:
    """An argparse ``type``: percentage points in [0, 100] as a fraction, or ``"off"``."""
    if text.strip().lower() == "off":
        return "off"
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 <= value <= 100):
        msg = f"must be percentage points in [0, 100] or 'off', got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value / 100


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
    parser = argparse.ArgumentParser(prog="softshare demo", description=DESCRIPTION)
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
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a tiny schedule (20 + 40 + 10 steps per network), for smoke tests",
    )
    parser.add_argument(
        "--seeds",
        type=_at_least(1, 1000),
        default=1,
        metavar="K",
        help="repeat the recipe over K >= 1 seeds",
    )
    parser.add_argument(
        "--data",
        type=_existing,
        default=None,
        metavar="PATH",
        help="MNIST-form data (28x28): mnist.npz or a folder of IDX files, gzipped or not "
        "(default: scikit-learn's bundled 8x8 digits)",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=None,
        choices=list(MODEL_SIDES),
        metavar="MODEL",
        help=f"networks to compress: {', '.join(MODEL_SIDES)} (default: "
        f"{' '.join(DIGITS_MODELS)} on the digits, {' '.join(PAPER_MODELS)} on 28x28 data)",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="torch device to train on: cpu (default), cuda, cuda:1, mps, ...",
    )
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--threads",
        type=_at_least(1, MAX_THREADS, f" (4 threads per core, {CORES} here)"),
        default=None,
        metavar="N",
        help="torch threads (default: 1 on the bundled digits, all cores on --data)",
    )
    parser.add_argument(
        "--tau",
        type=_positive_float,
        default=None,
        help="strength of the prior (per example), > 0: where the error-budget search starts, "
        "or the strength itself with --error-budget off (default 2e-3)",
    )
    parser.add_argument(
        "--error-budget",
        type=_budget,
        default=None,
        metavar="PP",
        help="validation error, in percentage points, the search for the strongest prior may "
        "add to the pretrained network's (default 0.1, the paper's); off: keep --tau fixed",
    )
    parser.add_argument(
        "--retrain-epochs",
        type=_at_least(1, 100_000),
        default=None,
        metavar="N",
        help="retrain with the prior for exactly N >= 1 epochs (instead of the schedule's)",
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
        1 when training diverges or a file cannot be written; 130 when
        interrupted (Ctrl-C).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    side = 8 if args.data is None else 28  # the digits' images, or MNIST's (checked when read)
    if args.models is None:
        args.models = list(DIGITS_MODELS if args.data is None else PAPER_MODELS)
    if len(set(args.models)) != len(args.models):
        parser.error(f"argument --models: a model is named twice in {args.models}")
    for kind in args.models:
        try:
            check_fits(kind, side)
        except ValueError as e:
            parser.error(f"argument --models: {e}")
    try:
        import torch  # noqa: F401 - present, or the run cannot start
    except ImportError:
        print('softshare demo needs PyTorch: pip install "softshare[demo]"', file=sys.stderr)
        return 2
    problem = _device_error(args.device)  # before --out is touched: a refused run changes nothing
    if problem is not None:
        parser.error(f"argument --device: {problem}")
    taken = next((p for p in _outputs(args) if p.is_dir()), None)
    if taken is not None:
        parser.error(f"argument --out: {taken} is a folder: the run writes its file there")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").unlink(missing_ok=True)
    except OSError as e:
        parser.error(f"argument --out: {e}")
    try:
        return _run(parser, args)
    except TrainingDiverged as e:
        print(f"softshare demo: {e}; {args.out} holds no results.json", file=sys.stderr)
        return 1
    except OSError as e:  # the run's own files: a full disk, a folder made meanwhile
        print(f"softshare demo: {e}; {args.out} holds no results.json", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nsoftshare demo: interrupted; {args.out} holds no results.json", file=sys.stderr)
        return 130


def _outputs(args: argparse.Namespace) -> list[Path]:
    """Every file the run writes into ``--out``."""
    names = ["results.json"]
    for seed in range(args.seeds):
        for kind in args.models:
            stem = f"{kind}_seed{seed}"
            names += [f"{stem}.sws"] + [f"{stem}_{f}.png" for f in FIGURES]
    return [args.out / n for n in names]


def _device_error(name: str) -> str | None:
    """Why torch cannot train on device ``name`` here (None when it can)."""
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as e:
        return f"{name!r} is not a torch device ({e})"
    if device.type == "meta":
        return f"{name}: meta tensors hold no values to train; use cpu, cuda or mps"
    if device.type == "cuda" and not torch.cuda.is_available():
        return f"{name}: no CUDA device here (torch {torch.__version__}, built for CUDA {torch.version.cuda})"
    if device.type == "mps" and not torch.backends.mps.is_available():
        return f"{name}: no MPS device here (Apple silicon and a torch built with MPS)"
    try:
        torch.zeros(1, device=device)
    except Exception as e:  # noqa: BLE001 - any backend's refusal, reported in its words
        return f"{name}: torch cannot use it ({str(e).splitlines()[0]})"
    return None


def _config(args: argparse.Namespace) -> Config:
    """The recipe's settings from the arguments."""
    cfg = Config.quick() if args.quick else Config()
    if args.tau is not None:
        cfg.tau = args.tau
    if args.error_budget is not None:
        cfg.error_budget = None if args.error_budget == "off" else args.error_budget
    if args.retrain_epochs is not None:
        cfg.retrain_steps, cfg.retrain_epochs = 0, args.retrain_epochs
    return cfg


def _print_schedule(cfg: Config, args: argparse.Namespace, n_train: int, side: int) -> None:
    """The schedule, in optimizer steps per network, before any training."""
    full = Config() if args.quick else cfg
    print(f"schedule per network, full: {schedule_for(full, n_train).describe()}")
    if side == 28:
        print(f"schedule per network on full MNIST: {schedule_for(full, MNIST_TRAIN).describe()}")
    if args.quick:
        print(f"this run (--quick): {schedule_for(cfg, n_train).describe()}")
    print(f"device: {args.device}; models: {', '.join(args.models)}", flush=True)


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """The run itself, its arguments checked."""
    import torch

    # The digits' networks are small: a step gains little from a second thread
    # and loses much (several times slower) when another process holds a core.
    torch.set_num_threads(args.threads or (1 if args.data is None else os.cpu_count() or 1))
    cfg = _config(args)
    rows = []
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        try:
            data = load_data(args.data, seed)
        except (ImportError, OSError, ValueError) as e:  # scikit-learn missing, or bad data
            parser.error(str(e))
        if seed == 0:
            _print_schedule(cfg, args, len(data.y_train), data.side)
        for kind in args.models:
            rows.append(
                run_network(
                    kind,
                    data,
                    cfg,
                    seed,
                    args.out,
                    progress=not args.no_progress,
                    plots=True,
                    device=args.device,
                )
            )
    print(
        f"\nSoft weight-sharing on {data.name} ({len(data.y_train)} train / {len(data.y_val)} "
        f"validation / {len(data.y_test)} test), {time.perf_counter() - t0:.0f} s\n"
    )
    print(table(rows, data.name))
    cited = sources(rows, data.name)
    if cited:
        print(f"\n{cited}")
    summary = means(rows, args.models, data.name)
    if args.seeds > 1:
        print(mean_lines(rows, summary))
    for r in rows:
        print(f"\n{r.name} seed {r.seed}: {r.merge}\n{r.table}")
    results: dict[str, Any] = {
        "data": data.name,
        "device": args.device,
        "schedule": asdict(schedule_for(cfg, len(data.y_train))),
        "mean": summary,
        "config": asdict(cfg),
    }
    write_results(args.out, results, rows)
    print(f"\ncompressed model files (*.sws), figures and results.json in {args.out}")
    return 0
