"""The recipe on one network: its result and its stages in order (its settings: :mod:`.config`)."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .config import Config
from .models import check_fits
from .plots import _figures
from .schedule import STAGES
from .stages import (
    Retrained,
    Setup,
    finetune_quantized,
    merge_and_quantize,
    pretrain,
    report_and_export,
    retrain_with_prior,
)

if TYPE_CHECKING:
    from pathlib import Path

    from .data import Data


@dataclass
class RunResult:
    """What the recipe achieved on one network: test errors, sparsity, compression.

    ``compression_ratio`` is float32 size over the bytes of the compressed model
    file written (``file_bytes``); ``compression_ratio_entropy`` the report's
    entropy bound, ``compression_ratio_huffman`` and ``compression_ratio_fixed``
    its Huffman and fixed-width figures for Han et al.'s format.
    ``tau_chosen`` is the strength of the checkpoint kept (``cfg.tau`` without
    a budget), ``budget_history`` the search's checks
    (:class:`softshare.torch.BudgetCheck` as dicts, with the step, the
    limit and whether it is the checkpoint kept).
    """

    name: str
    seed: int
    error_before: float
    error_after: float
    error_retrained: float
    nonzero_fraction: float
    n_components: int
    compression_ratio: float
    compression_ratio_entropy: float
    compression_ratio_fixed: float
    merge: str
    seconds: float
    n_weights: int
    file_bytes: int = 0
    compression_ratio_huffman: float = math.nan
    n_train: int = 0
    steps: dict[str, int] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    error_budget: float | None = None
    tau_chosen: float = math.nan
    budget_history: list[dict[str, Any]] = field(default_factory=list)
    table: str = field(repr=False, default="")


def _check_config(cfg: Config) -> None:
    """A ValueError naming the first setting the recipe cannot run with, before any training."""
    lows = {f"{stage}_{unit}": 0 for stage in STAGES for unit in ("steps", "epochs")}
    for name, low in {**lows, "max_evals": 1, "batch_size": 1, "reassign_every": 1}.items():
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            msg = f"Config.{name} must be an integer >= {low}, got {value!r}"
            raise ValueError(msg)
    if cfg.retrain_steps == cfg.retrain_epochs == 0:
        msg = "Config.retrain_steps or Config.retrain_epochs must be >= 1: retraining needs a step"
        raise ValueError(msg)
    if not (math.isfinite(cfg.tau) and cfg.tau > 0):
        msg = f"Config.tau must be finite and above 0, got {cfg.tau!r}"
        raise ValueError(msg)


def run_network(
    kind: str,
    data: Data,
    cfg: Config,
    seed: int,
    out: Path,
    *,
    progress: bool,
    plots: bool,
    device: str = "cpu",
) -> RunResult:
    """Run the recipe on one network and write its export (and figures) to ``out``.

    Parameters
    ----------
    kind : {"mlp", "cnn", "lenet-300-100", "lenet-5-caffe"}
        The network (see :func:`~softshare.demo.make_model`).
    data : Data
        The data; every choice is taken on its validation split.
    cfg : Config
        The settings.
    seed : int
        Seeds torch's global RNG (the model's initialisation) and the batches.
    out : Path
        Folder for the compressed model file ``<kind>_seed<seed>.sws`` and the figures.
    progress : bool
        Draw a progress display on stderr (steps, time taken, time left).
    plots : bool
        Draw the figures (needs matplotlib; skipped without it).
    device : str, default "cpu"
        Torch device to train on ("cpu", "cuda", "mps", ...).

    Returns
    -------
    RunResult
        Test errors before, after retraining and after quantization, the
        storage cost, and each stage's steps and seconds.

    Raises
    ------
    ValueError
        Before any training, if a step or epoch count is negative (retraining
        needs at least one step), the batch size or ``max_evals`` is below 1,
        ``tau`` is not above 0, or ``kind`` cannot take the data's images.
    """
    _check_config(cfg)
    check_fits(kind, data.side)
    t_start = time.perf_counter()
    s = Setup.build(kind, data, cfg, seed, progress=progress, device=device)
    clock = [time.perf_counter()]
    seconds: dict[str, float] = {}

    def lap(stage: str) -> None:
        now = time.perf_counter()
        seconds[stage], clock[0] = now - clock[0], now

    pretrained = pretrain(s)
    lap("pretrain")
    retrained = retrain_with_prior(s)
    lap("retrain")
    quantized = merge_and_quantize(s, retrained)
    lap("merge")
    finetuned = finetune_quantized(s, quantized)
    lap("finetune")
    report = report_and_export(s, finetuned, out / f"{kind}_seed{seed}.sws")
    sched = s.sched
    checks = _budget_history(retrained)
    if plots:
        _figures(
            kind,
            seed,
            out,
            pretrained.weights,
            retrained.weights,
            quantized.mixture,
            retrained.history,
            checks,
            merge=quantized.merge,
            use_pi=quantized.use_pi,
        )
    return RunResult(
        name=kind,
        seed=seed,
        error_before=pretrained.error,
        error_after=finetuned.error,
        error_retrained=retrained.error,
        nonzero_fraction=report.nonzero_fraction,
        n_components=len(finetuned.state.counts),
        compression_ratio=report.ratio_file,
        compression_ratio_entropy=report.ratio_entropy,
        compression_ratio_fixed=32 * report.n_weights / report.bits_fixed,
        merge=str(quantized.merge),
        seconds=time.perf_counter() - t_start,
        n_weights=report.n_weights,
        file_bytes=report.file_bytes or 0,
        compression_ratio_huffman=report.ratio,
        n_train=sched.n_train,
        steps={stage: getattr(sched, stage) for stage in STAGES},
        stage_seconds=seconds,
        table=report.to_markdown(),
        error_budget=cfg.error_budget,
        tau_chosen=_tau_chosen(retrained, cfg, sched.n_train),
        budget_history=checks,
    )


def _tau_chosen(retrained: Retrained, cfg: Config, n_train: int) -> float:
    """The strength (per example, as ``cfg.tau``) of the retrained checkpoint kept."""
    best = retrained.budget.best if retrained.budget is not None else None
    return cfg.tau if retrained.budget is None else (best.lam * n_train if best else math.nan)


def _budget_history(retrained: Retrained) -> list[dict[str, Any]]:
    """The search's checks as dicts, each with its retraining step (none without a budget).

    Retraining records its mixture at every check it makes the search's
    (``retrained.history``): the step comes from there.
    """
    if retrained.budget is None:
        return []
    return [
        {
            "step": step,
            **asdict(c),
            "kept": c is retrained.budget.best,
            "limit": retrained.budget.limit,
        }
        for (step, _, _), c in zip(retrained.history, retrained.budget.history, strict=True)
    ]
