"""softshare.torch: the op, MixturePrior and the recipe from a PyTorch loop, distributed."""

from __future__ import annotations
