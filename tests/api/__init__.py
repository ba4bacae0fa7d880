"""softshare's Python entry points: their arguments, errors, out= arrays and partial sums."""

from __future__ import annotations
