"""What the training loops share: batches, snapshots, errors on a split, a progress bar."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from .. import compress


def _progress(prefix: str, i: int, n: int, extra: str = "", *, enabled: bool = True) -> None:
    """Draw step ``i`` of ``n`` as a bar on stderr (nothing when not ``enabled``)."""
    if not enabled:
        return
    width = 24
    done = int(width * (i + 1) / n)
    sys.stderr.write(f"\r{prefix} [{'#' * done}{'.' * (width - done)}] {i + 1}/{n} {extra}   ")
    if i + 1 == n:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _error(model: Any, x: Any, y: Any) -> float:
    """Classification error of ``model`` on ``(x, y)``."""
    import torch

    with torch.no_grad():
        return float((model(x).argmax(dim=1) != y).float().mean())


def _batches(n: int, batch: int, gen: Any) -> list[Any]:
    """A random permutation of ``range(n)`` drawn from ``gen``, split into batches."""
    import torch

    perm = torch.randperm(n, generator=gen)
    return list(perm.split(batch))


def _snapshot(module: Any) -> dict[str, Any]:
    """A detached copy of a module's state."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _val_error_with(model: Any, weights: list[np.ndarray], x: Any, y: Any) -> float:
    """Classification error of ``model`` on ``(x, y)`` with its parameters set to ``weights``."""
    import torch

    params = {
        n: torch.from_numpy(np.asarray(w, dtype=np.float32))
        for (n, _), w in zip(model.named_parameters(), weights)
    }
    with torch.no_grad():
        out = torch.func.functional_call(model, params, (x,))
    return float((out.argmax(dim=1) != y).float().mean())


def _quantized_val_error(model: Any, prior: Any, x: Any, y: Any) -> float:
    """Classification error of ``model`` with its weights quantized by ``prior``'s mixture."""
    weights = [p.detach().numpy() for p in model.parameters()]
    quant, _ = compress.quantize(weights, prior.mixture())
    return _val_error_with(model, quant, x, y)
