"""The demo's two networks: a LeNet-300-100-style MLP and a small LeNet-5-style CNN."""

from __future__ import annotations

from typing import Any


def make_model(kind: str, side: int) -> Any:
    """A fresh, randomly initialised classifier of ``side`` x ``side`` images into 10 classes.

    Parameters
    ----------
    kind : {"mlp", "cnn"}
        ``"mlp"``: 300-100 hidden units; ``"cnn"``: two 3x3 conv layers (16, 32
        channels) with max-pooling, then 64 hidden units.
    side : int
        Image side in pixels (a multiple of 4 for the CNN).

    Returns
    -------
    torch.nn.Sequential
        The model (its initialisation draws from torch's global RNG).

    Raises
    ------
    ValueError
        For an unknown ``kind``.
    """
    from torch import nn

    if kind == "mlp":
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(side * side, 300),
            nn.ReLU(),
            nn.Linear(300, 100),
            nn.ReLU(),
            nn.Linear(100, 10),
        )
    if kind == "cnn":
        s = side // 4
        return nn.Sequential(
            nn.Unflatten(1, (1, side)),  # (B, side, side) -> (B, 1, side, side)
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * s * s, 64),
            nn.ReLU(),
            nn.Linear(64, 10),
        )
    msg = f"unknown model kind {kind!r}"
    raise ValueError(msg)
