"""softshare.compress: the recipe's steps and native passes, and one quantized network."""

from __future__ import annotations
