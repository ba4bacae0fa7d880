"""What the training loops share: batches, snapshots, errors on a split, a progress display."""

from __future__ import annotations

import math
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

_CHUNK = 1000  # images per forward pass when measuring an error (bounds the memory)


def _clock(seconds: float) -> str:
    """``seconds`` as m:ss, or h:mm:ss from an hour."""
    s = max(0, round(seconds))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """A one-line progress display of a stage on stderr: steps done, time taken, time left.

    The time left is the time per step so far times the steps left; the line
    is redrawn at most five times a second, and always on the last step.
    """

    def __init__(self, prefix: str, total: int, *, enabled: bool) -> None:
        self.prefix, self.total, self.enabled = prefix, max(1, total), enabled
        self.t0 = time.perf_counter()
        self.last = -math.inf
        self.extra = ""

    def update(self, i: int, extra: str | None = None) -> None:
        """Step ``i`` (from 0) is done; ``extra`` (when given) replaces the status text."""
        if extra is not None:
            self.extra = extra
        if not self.enabled:
            return
        done, now = i + 1, time.perf_counter()
        if done < self.total and now - self.last < 0.2:
            return
        self.last = now
        elapsed = now - self.t0
        left = elapsed / done * (self.total - done)
        width = 24
        filled = int(width * done / self.total)
        status = " ".join(
            t for t in (f"{done}/{self.total}", self.extra, f"{_clock(elapsed)} taken,") if t
        )
        sys.stderr.write(
            f"\r{self.prefix} [{'#' * filled}{'.' * (width - filled)}] {status} "
            f"{_clock(left)} left   "
        )
        if done == self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _steps(n: int, batch: int, gen: Any, total: int, device: Any) -> Iterator[tuple[int, Any]]:
    """``total`` batches of indices into ``range(n)``: a fresh permutation from ``gen`` each epoch."""
    import torch

    step = 0
    while step < total:
        for idx in torch.randperm(n, generator=gen).split(batch):
            if step == total:
                return
            yield step, idx.to(device)
            step += 1


def _is_check(step: int, every: int, total: int) -> bool:
    """Whether the validation check falls after ``step`` (every ``every`` steps, and the last)."""
    return (step + 1) % every == 0 or step + 1 == total


def _error(model: Any, x: Any, y: Any) -> float:
    """Classification error of ``model`` on ``(x, y)``."""
    import torch

    with torch.no_grad():
        wrong = sum(
            int((model(x[i : i + _CHUNK]).argmax(dim=1) != y[i : i + _CHUNK]).sum())
            for i in range(0, len(y), _CHUNK)
        )
    return wrong / len(y)


class TrainingDiverged(ValueError):
    """Training left the network's weights non-finite (a prior too strong, a rate too high)."""


def _check_finite(model: Any, stage: str, step: int) -> None:
    """Raise :class:`TrainingDiverged` if any of ``model``'s parameters is nan or inf."""
    import torch

    with torch.no_grad():
        bad = next((n for n, p in model.named_parameters() if not bool(p.isfinite().all())), None)
    if bad is not None:
        msg = (
            f"training diverged: {stage} left {bad} non-finite at step {step + 1} "
            "(a smaller --tau, or --error-budget with the default tau, trains)"
        )
        raise TrainingDiverged(msg)


def _snapshot(module: Any) -> dict[str, Any]:
    """A detached copy of a module's state."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}
