"""A small MLP trained on a teacher task, shared by the torch recipe tests (budget, fine-tuning)."""

from __future__ import annotations

from typing import Any


def trained_teacher_mlp(seed: int) -> tuple[Any, Any, Any, Any, Any]:
    """A 12-32-3 MLP trained 20 epochs on ``argmax(x @ teacher)``: model, x, y, x_val, y_val."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.manual_seed(seed)
    teacher = torch.randn(12, 3)
    x, xv = torch.randn(512, 12), torch.randn(256, 12)
    y, yv = (x @ teacher).argmax(1), (xv @ teacher).argmax(1)
    model = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 3))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(20):
        for xb, yb in zip(x.split(64), y.split(64)):
            opt.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
    return model, x, y, xv, yv
