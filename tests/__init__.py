"""softshare's tests, one folder per room: kernel, api, torch, jax, format, recipe, demo, repo."""

from __future__ import annotations
