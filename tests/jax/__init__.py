"""softshare.jax: the penalty under jit, grad and vmap, its errors, and its recipe."""

from __future__ import annotations
