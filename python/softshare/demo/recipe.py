"""The recipe on one network: its settings, its result, and its stages in order."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .plots import _figures
from .stages import (
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
class Config:
    """Settings of the recipe; the defaults are the demo's."""

    pretrain_epochs: int = 60
    retrain_epochs: int = 400
    finetune_epochs: int = 60
    batch_size: int = 64
    n_components: int = 17
    tau: float = 2e-3  # lam = tau / n_train: the prior per training example
    lr: float = 2e-3
    lr_mu: float = 5e-4
    lr_log_var: float = 1e-2
    lr_logit: float = 3e-3
    max_sigma_fraction: float = 0.05
    pi_zero: float | None = 0.999  # None: the zero component's proportion is learnt
    init_sigma: float = 2.0  # initial sigma of every component, in units of the weights' std
    finetune_lr: float = 5e-4
    finetune_lr_weights: float = 3e-4
    spread: str = "range"


@dataclass
class RunResult:
    """What the recipe achieved on one network: test errors, sparsity, compression.

    ``compression_ratio`` is float32 size over the bytes of the compressed model
    file written (``file_bytes``); ``compression_ratio_entropy`` the report's
    entropy bound, ``compression_ratio_huffman`` and ``compression_ratio_fixed``
    its Huffman and fixed-width figures for Han et al.'s format.
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
    table: str = field(repr=False, default="")


def _check_config(cfg: Config) -> None:
    """A ValueError naming the first setting the recipe cannot run with, before any training."""
    lows = {"pretrain_epochs": 0, "retrain_epochs": 1, "finetune_epochs": 0, "batch_size": 1}
    for name, low in lows.items():
        value = getattr(cfg, name)
        if not isinstance(value, int) or value < low:
            msg = f"Config.{name} must be an integer >= {low}, got {value!r}"
            raise ValueError(msg)
    if not (math.isfinite(cfg.tau) and cfg.tau > 0):
        msg = f"Config.tau must be finite and above 0, got {cfg.tau!r}"
        raise ValueError(msg)


def run_network(
    kind: str, data: Data, cfg: Config, seed: int, out: Path, *, progress: bool, plots: bool
) -> RunResult:
    """Run the recipe on one network and write its export (and figures) to ``out``.

    Parameters
    ----------
    kind : {"mlp", "cnn"}
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
        Draw progress bars on stderr.
    plots : bool
        Draw the figures (needs matplotlib; skipped without it).

    Returns
    -------
    RunResult
        Test errors before, after retraining and after quantization, and the
        storage cost.

    Raises
    ------
    ValueError
        Before any training, if an epoch count is negative (retraining needs
        at least one), the batch size is below 1, or ``tau`` is not above 0.
    """
    _check_config(cfg)
    t_start = time.perf_counter()
    s = Setup.build(kind, data, cfg, seed, progress=progress)
    pretrained = pretrain(s)
    retrained = retrain_with_prior(s, pretrained.weights)
    quantized = merge_and_quantize(s, retrained)
    finetuned = finetune_quantized(s, quantized)
    report = report_and_export(s, finetuned, out / f"{kind}_seed{seed}.sws")
    if plots:
        _figures(
            kind,
            seed,
            out,
            pretrained.weights,
            retrained.weights,
            quantized.mixture,
            retrained.history,
        )
    used = np.unique(np.concatenate([np.asarray(i).ravel() for i in finetuned.indices]))
    return RunResult(
        name=kind,
        seed=seed,
        error_before=pretrained.error,
        error_after=finetuned.error,
        error_retrained=retrained.error,
        nonzero_fraction=report.nonzero_fraction,
        n_components=len(used),
        compression_ratio=report.ratio_file,
        compression_ratio_entropy=report.ratio_entropy,
        compression_ratio_fixed=32 * report.n_weights / report.bits_fixed,
        merge=str(quantized.merge),
        seconds=time.perf_counter() - t_start,
        n_weights=report.n_weights,
        file_bytes=report.file_bytes or 0,
        compression_ratio_huffman=report.ratio,
        table=report.to_markdown(),
    )
